"""Tick to browser: from the publish of a tick to its receipt by the last of N websocket clients.

The server under test is `python -m services.web` subscribed to a PUB socket the bench binds;
the baseline is tests.bench.bare_broadcast on the same ticks. The clients run in their own
process (tests.bench.wsclients), so the server has a core to itself on a 2-core machine. Ticks
are published at a fixed spacing wider than one broadcast, after a few unmeasured warm-up ticks.
"""

from __future__ import annotations

import json
import logging
import select
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import zmq

from tests.bench.procs import bench_env, cpu_seconds, free_port, http_status, running, wait_until
from tests.bench.publisher import bound_publisher, ticks, wait_subscribed
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, median, ms, p99, times

log = logging.getLogger(__name__)

P99_LIMIT_S = 0.025  # for the smallest client count
MAX_RATIO = 1.2  # for the largest, against the bare broadcast: p99 and server CPU per tick
READY_TIMEOUT_S = 60.0
SERVERS = ("web", "bare")


@dataclass(frozen=True)
class Broadcast:
    """What one server did for one client count: latency to the last client per tick, and CPU."""

    latencies_s: list[float]
    cpu_per_tick_s: float
    client_cpu_per_tick_s: float  # of the process that holds every client
    missed: int  # tick receipts that never came


def run(sizes: Sizes, work: Path, report: Report) -> None:
    """Measure each client count on the web process and on the bare broadcast."""
    smallest = min(sizes.live_clients)
    for clients, spacing_s in zip(sizes.live_clients, sizes.live_spacing_s, strict=True):
        measured = {
            server: broadcast(server, clients, spacing_s, sizes, work) for server in SERVERS
        }
        web, bare = measured["web"], measured["bare"]
        label = f"tick -> browser, last of {clients:,} clients"
        for stat, statistic in (("median", median), ("p99", p99)):
            value, baseline = statistic(web.latencies_s), statistic(bare.latencies_s)
            ratio = value / baseline
            target, met = _target(clients == smallest, stat, value, ratio)
            report.add(
                Row(
                    f"{label}, {stat}",
                    ms(value),
                    f"{ms(baseline)} bare aiohttp",
                    times(ratio),
                    target,
                    met,
                )
            )
        cpu_ratio = web.cpu_per_tick_s / bare.cpu_per_tick_s if bare.cpu_per_tick_s else None
        cpu_target = "-" if clients == smallest else f"<= {MAX_RATIO:g}x bare"
        cpu_met = None if clients == smallest or cpu_ratio is None else cpu_ratio <= MAX_RATIO
        report.add(
            Row(
                f"server CPU per tick, {clients:,} clients",
                ms(web.cpu_per_tick_s),
                f"{ms(bare.cpu_per_tick_s)} bare aiohttp",
                times(cpu_ratio) if cpu_ratio is not None else "-",
                cpu_target,
                cpu_met,
            )
        )
        report.note(
            f"live, {clients:,} clients: {len(web.latencies_s)} ticks {spacing_s * 1000:.0f} ms "
            f"apart after {sizes.live_warmup_ticks} warm-up ticks; receipts missed: "
            f"web {web.missed}, bare {bare.missed}; the clients' process used "
            f"{ms(web.client_cpu_per_tick_s)} (web) and {ms(bare.client_cpu_per_tick_s)} (bare) "
            "CPU per tick"
        )


def _target(smallest: bool, stat: str, value_s: float, ratio: float) -> tuple[str, bool | None]:
    """Return the target of a latency row and whether it is met (None: no target).

    The smallest client count is held to an absolute p99; the largest's p99 to the bare
    broadcast (its median is shown against the same ratio, without a target).
    """
    if not smallest:
        if stat == "median":
            return "-", None
        return f"<= {MAX_RATIO:g}x bare", ratio <= MAX_RATIO
    if stat == "p99":
        return f"<= {ms(P99_LIMIT_S)}", value_s <= P99_LIMIT_S
    return "-", None


def broadcast(server: str, clients: int, spacing_s: float, sizes: Sizes, work: Path) -> Broadcast:
    """Run one server with `clients` websockets and time sizes.live_ticks ticks after a warm-up."""
    log.info("live: %s with %d clients", server, clients)
    warmup = sizes.live_warmup_ticks
    total = warmup + sizes.live_ticks
    frames = [tick.to_frames() for tick in ticks(total, 1.0)]
    port = free_port()
    log_path = work / f"live-{server}-{clients}.log"
    with bound_publisher() as (socket, endpoint):
        if server == "web":
            command = [sys.executable, "-m", "services.web"]
            env = bench_env(
                {
                    "PCW_SOURCE": "simulated",
                    "PCW_DB_PATH": str(work / "live-absent.db"),  # the feed needs no file
                    "PCW_SUBSCRIBE": endpoint,
                    "PCW_WEB_PORT": str(port),
                }
            )
        else:
            command = [sys.executable, "-m", "tests.bench.bare_broadcast", str(port), endpoint]
            env = bench_env()
        with running(command, env, log_path) as process:
            wait_subscribed(socket, 30)
            wait_until(
                lambda: http_status(f"http://127.0.0.1:{port}/") is not None,
                30,
                f"the {server} server",
                process,
                log_path,
            )
            timeout_s = READY_TIMEOUT_S + total * spacing_s + 30
            client_command = [
                sys.executable,
                "-m",
                "tests.bench.wsclients",
                f"ws://127.0.0.1:{port}/ws",
                str(clients),
                str(total),
                str(timeout_s),
            ]
            with running(
                client_command,
                bench_env(),
                work / f"wsclients-{server}-{clients}.log",
                stdout=subprocess.PIPE,
            ) as client:
                _wait_ready(client)
                cpu_before = cpu_seconds(process.pid)
                published = _publish(socket, frames, spacing_s)
                out, _ = client.communicate(timeout=timeout_s)
                cpu_s = cpu_seconds(process.pid) - cpu_before
    result = json.loads(out.decode().strip().splitlines()[-1])
    last = {int(seq): at for seq, at in result["last"].items()}
    received = {int(seq): count for seq, count in result["received"].items()}
    seqs = range(warmup, total)
    latencies = [last[seq] - published[seq] for seq in seqs if seq in last]
    if not latencies:
        raise RuntimeError(f"no tick reached the clients of the {server} server")
    missed = sum(clients - received.get(seq, 0) for seq in seqs)
    return Broadcast(latencies, cpu_s / total, result["cpu_s"] / total, missed)


def _wait_ready(client: subprocess.Popen[bytes]) -> None:
    assert client.stdout is not None
    readable, _, _ = select.select([client.stdout], [], [], READY_TIMEOUT_S)
    line = client.stdout.readline() if readable else b""
    if line.strip() != b"ready":
        raise RuntimeError(f"the websocket clients did not get ready: {line!r}")


def _publish(socket: zmq.Socket, frames: list[list[bytes]], spacing_s: float) -> dict[int, float]:
    """Send one tick every spacing_s; return the monotonic time each seq was sent."""
    published: dict[int, float] = {}
    start = time.monotonic() + spacing_s
    for seq, message in enumerate(frames):
        pause_s = start + seq * spacing_s - time.monotonic()
        if pause_s > 0:
            time.sleep(pause_s)
        published[seq] = time.monotonic()
        socket.send_multipart(message)
    return published
