"""A fleet of many simulated hosts behind one web process: a history file and a live publisher.

The file is written through the writer's own storage code (tests.bench.generate: the simulated
GPUs' names, UUIDs and load cycle), `hosts` x `gpus_per_host` GPUs for `history_s` up to now.
One ZeroMQ publisher bound here stands for every sampler of the fleet: each tick it sends is a
real Tick, encoded as a sampler encodes it, carrying its own host name, so that the real web
process (listening there, reading the file) sees `hosts` hosts. Starting 32 sampler processes
on a 2-core machine would measure the machine, not the page.
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import zmq

from common.messages import GpuProcess, Tick
from tests.bench.generate import fast_host_ticks, generate
from tests.bench.procs import bench_env, free_port, http_status, running, wait_until
from tests.bench.publisher import bound_publisher, wait_subscribed

READY_TIMEOUT_S = 60.0


def host_name(number: int) -> str:
    """Return the name generate() gives host `number`."""
    return f"host{number:02d}"


@dataclass
class Fleet:
    """A running web process over the fleet's file, and the publisher that feeds it ticks."""

    url: str
    hosts: int
    gpus_per_host: int
    interval_s: float
    socket: zmq.Socket
    last_ts: float  # the newest tick sent (or stored) of every host
    seq: int = 0
    # (host number, GPU index) -> what every later tick says instead of the formulas
    holders: dict[tuple[int, int], list[GpuProcess]] = field(default_factory=dict)
    util_pct: dict[tuple[int, int], int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def gpus(self) -> int:
        """Return how many GPUs the fleet has."""
        return self.hosts * self.gpus_per_host

    def tick(self, number: int, ts: float) -> Tick:
        """Return host `number`'s tick at ts: the formulas, then holders and util_pct."""
        name = host_name(number)
        (tick,) = fast_host_ticks(name, self.gpus_per_host, ts, 1, self.interval_s, number)
        readings = []
        for reading in tick.gpus:
            key = (number, reading.index)
            changes: dict[str, object] = {"processes": self.holders.get(key, [])}
            if key in self.util_pct:
                changes["util_gpu_pct"] = self.util_pct[key]
            readings.append(msgspec.structs.replace(reading, **changes))
        self.seq += 1
        return msgspec.structs.replace(tick, seq=self.seq, gpus=readings)

    def send_host(self, number: int, ts: float | None = None) -> float:
        """Publish host `number`'s tick at ts (default: now) as its sampler would; return ts."""
        with self.lock:
            ts = max(time.time(), self.last_ts + 0.001) if ts is None else ts
            self.socket.send_multipart(self.tick(number, ts).to_frames())
            self.last_ts = max(self.last_ts, ts)
            return ts

    def tick_all(self, ts: float | None = None) -> float:
        """Send every host's tick at ts (default: now); return ts."""
        with self.lock:
            ts = max(time.time(), self.last_ts + 0.001) if ts is None else ts
            for number in range(self.hosts):
                self.socket.send_multipart(self.tick(number, ts).to_frames())
            self.last_ts = max(self.last_ts, ts)
            return ts

    @contextlib.contextmanager
    def ticking(self) -> Iterator[None]:
        """Send every host's tick each interval_s in a thread while the block runs (none stale)."""
        stop = threading.Event()

        def loop() -> None:
            while not stop.wait(self.interval_s):
                self.tick_all()

        thread = threading.Thread(target=loop, name="fleet-ticks", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()


@contextlib.contextmanager
def running_fleet(
    work: Path,
    hosts: int,
    gpus_per_host: int,
    *,
    interval_s: float = 10.0,
    history_s: float = 3600.0,
) -> Iterator[Fleet]:
    """Write the fleet's history, start a web process over it, send every host's first tick."""
    db_path = work / f"fleet-{hosts}x{gpus_per_host}-{time.time_ns()}.db"
    generate(db_path, history_s / 86400, gpus_per_host, hosts, interval_s)
    last_ts = (time.time() // interval_s) * interval_s  # generate()'s newest tick
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log_path = work / f"fleet-web-{port}.log"
    with bound_publisher() as (socket, endpoint):
        env = bench_env(
            {
                "PCW_SOURCE": "simulated",
                "PCW_DB_PATH": str(db_path),
                "PCW_SUBSCRIBE": endpoint,
                "PCW_WEB_PORT": str(port),
                "PCW_INTERVAL_S": f"{interval_s:g}",
            }
        )
        with running([sys.executable, "-m", "services.web"], env, log_path) as web:
            wait_subscribed(socket, READY_TIMEOUT_S)
            wait_until(
                lambda: http_status(url + "/healthz") is not None,
                READY_TIMEOUT_S,
                "the web",
                web,
                log_path,
            )
            fleet = Fleet(url, hosts, gpus_per_host, interval_s, socket, last_ts)
            fleet.tick_all()
            wait_until(
                lambda: len(_json(url + "/api/v1/hosts").get("hosts", [])) >= hosts,
                READY_TIMEOUT_S,
                "every host",
                web,
                log_path,
            )
            yield fleet


def _json(url: str) -> dict:
    """Return a JSON answer of the web process."""
    with urllib.request.urlopen(url, timeout=30) as response:
        return json.loads(response.read())
