"""Soak: the whole stack's resident memory over a simulated day, which must stay small and flat.

The stack runs under supervisord exactly as users run it (tests.stack.Stack) on 8 simulated
GPUs, ticking every SOAK_INTERVAL_S instead of every 10 s, so that a day of 10-second ticks
(8,640) passes in a quarter of an hour. Meanwhile a dashboard is open: a websocket reads every
tick, and the page's data (the GPU list and the last hour's history) is asked for every few
seconds. Every sample_s the RSS of supervisord and its three programs is read from /proc and
summed.

Figures: the RSS at the end against the RSS after the first simulated hour (the baseline, read
in the same run), held to STACK_LIMIT_BYTES; and the slope of a least-squares line through the
samples of the last half, in MB per simulated hour, held to FLAT_MB_PER_HOUR ("flat": over the
last 12 simulated hours the line rises less than 12 MB), against the first half's slope.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from tests.bench.procs import memory_bytes
from tests.bench.table import Report, Row, mb, times
from tests.stack import Stack

log = logging.getLogger(__name__)

STACK_LIMIT_BYTES = 150e6
FLAT_MB_PER_HOUR = 1.0
SIMULATED_INTERVAL_S = 10.0  # the interval whose day is simulated
SOAK_INTERVAL_S = 0.1  # PCW_INTERVAL_S's least
PROGRAMS = ("sampler", "writer", "web")
PAGE_EVERY_S = 5.0  # how often the open dashboard asks for its data
LOG_EVERY_SAMPLES = 12  # a progress line with the RSS of each program


@dataclass(frozen=True)
class SoakSize:
    """How long one soak runs, in ticks, and how often it reads the memory."""

    ticks: int
    sample_s: float


FULL_SOAK = SoakSize(ticks=8640, sample_s=5.0)  # a day of 10 s ticks: 14.4 min at 0.1 s
SMOKE_SOAK = SoakSize(ticks=60, sample_s=1.0)


@dataclass(frozen=True)
class Sample:
    """The stack's RSS at a moment of the run, in simulated hours since the start."""

    simulated_h: float
    rss_bytes: int  # summed
    by_program: dict[str, int]


def run(smoke: bool, work: Path, report: Report) -> None:
    """Soak the stack, then report its final RSS and the slope of its last half."""
    size = SMOKE_SOAK if smoke else FULL_SOAK
    samples, stored = soak(size, work)
    end = samples[-1]
    first_hour = next((s for s in samples if s.simulated_h >= 1.0), samples[0])
    half_h = end.simulated_h / 2
    first_half = [s for s in samples if s.simulated_h <= half_h]
    last_half = [s for s in samples if s.simulated_h >= half_h]
    slope, earlier = mb_per_hour(last_half), mb_per_hour(first_half)
    report.add(
        Row(
            f"RSS of the whole stack after {end.simulated_h:.1f} simulated h",
            mb(end.rss_bytes),
            f"{mb(first_hour.rss_bytes)} after {first_hour.simulated_h:.1f} h",
            times(end.rss_bytes / first_hour.rss_bytes),
            f"<= {mb(STACK_LIMIT_BYTES)}",
            end.rss_bytes <= STACK_LIMIT_BYTES,
        )
    )
    report.add(
        Row(
            "RSS slope over the soak's last half",
            f"{slope:+.2f} MB/simulated h",
            f"{earlier:+.2f} MB/h first half",
            "-",
            f"< {FLAT_MB_PER_HOUR:g} MB/h",
            slope < FLAT_MB_PER_HOUR,
        )
    )
    peak = max(samples, key=lambda s: s.rss_bytes)
    growth = ", ".join(
        f"{name} {mb(first_hour.by_program[name])} -> {mb(end.by_program[name])}"
        for name in end.by_program
    )
    report.note(f"soak: RSS by program, after the first simulated hour -> at the end: {growth}")
    slopes = ", ".join(
        f"{name} {program_mb_per_hour(last_half, name):+.2f}" for name in end.by_program
    )
    report.note(f"soak: RSS slope by program over the last half, MB/simulated h: {slopes}")
    report.note(
        f"soak: {size.ticks:,} ticks of 8 simulated GPUs every {SOAK_INTERVAL_S:g} s stand for "
        f"{size.ticks * SIMULATED_INTERVAL_S / 3600:g} h at {SIMULATED_INTERVAL_S:g} s; "
        f"{stored:,} ticks stored; RSS sampled {len(samples)} times, peak {mb(peak.rss_bytes)} "
        f"at {peak.simulated_h:.1f} h; a websocket open and the page's data asked for every "
        f"{PAGE_EVERY_S:g} s throughout"
    )


def mb_per_hour(samples: Sequence[Sample]) -> float:
    """Return the slope of the least-squares line through the samples, in MB per hour."""
    return _slope([s.simulated_h for s in samples], [s.rss_bytes / 1e6 for s in samples])


def program_mb_per_hour(samples: Sequence[Sample], program: str) -> float:
    """Return the slope of one program's RSS through the samples, in MB per hour."""
    return _slope([s.simulated_h for s in samples], [s.by_program[program] / 1e6 for s in samples])


def _slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Return the slope of the least-squares line through the points (0 with fewer than 2)."""
    if len(xs) < 2:
        return 0.0
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / spread


def soak(size: SoakSize, work: Path) -> tuple[list[Sample], int]:
    """Run the stack for size.ticks ticks; return the RSS samples and the ticks stored."""
    folder = work / "soak"
    folder.mkdir(exist_ok=True)
    env = {
        "PCW_SIM_GPUS": "8",
        "PCW_INTERVAL_S": str(SOAK_INTERVAL_S),
        "PCW_LOG_LEVEL": "WARNING",
        "PCW_MAINTENANCE_S": str(7 * 86400),
    }
    log.info("soak: %d ticks at %g s", size.ticks, SOAK_INTERVAL_S)
    with Stack(folder, env) as stack:
        stack.wait_ticks(3, timeout_s=60)
        stack.wait_web(timeout_s=60)
        samples = asyncio.run(_watch(stack, size))
        (stored,) = stack.query("SELECT count(DISTINCT ts) FROM readings")[0]
    return samples, int(stored)


async def _watch(stack: Stack, size: SoakSize) -> list[Sample]:
    """Keep a dashboard open and sample the stack's RSS until size.ticks ticks have passed."""
    duration_s = size.ticks * SOAK_INTERVAL_S
    speedup = SIMULATED_INTERVAL_S / SOAK_INTERVAL_S
    samples: list[Sample] = []
    async with aiohttp.ClientSession() as session:
        reader = asyncio.create_task(_read_feed(session, stack.web_url))
        page = asyncio.create_task(_ask_page(session, stack.web_url))
        started = time.monotonic()
        try:
            while True:
                elapsed_s = time.monotonic() - started
                by_program = _stack_rss(stack)
                samples.append(
                    Sample(elapsed_s * speedup / 3600, sum(by_program.values()), by_program)
                )
                if len(samples) % LOG_EVERY_SAMPLES == 1:
                    shown = ", ".join(f"{name} {mb(rss)}" for name, rss in by_program.items())
                    log.info("soak: %.1f simulated h: %s", samples[-1].simulated_h, shown)
                if elapsed_s >= duration_s:
                    break
                await asyncio.sleep(min(size.sample_s, duration_s - elapsed_s))
        finally:
            for task in (reader, page):
                task.cancel()
            await asyncio.wait([reader, page])
        for task in (reader, page):
            if not task.cancelled() and task.exception() is not None:
                raise RuntimeError("the soak's dashboard failed") from task.exception()
    return samples


def _stack_rss(stack: Stack) -> dict[str, int]:
    """Return the RSS of supervisord and of each of its programs now, in bytes."""
    pids = {"supervisord": stack.processes["supervisord"].pid}
    pids.update({name: stack.pid_of(name) for name in PROGRAMS})
    return {name: memory_bytes(pid)[0] for name, pid in pids.items()}


async def _read_feed(session: aiohttp.ClientSession, url: str) -> None:
    """Read the live feed as the page does, reconnecting if the server drops the socket."""
    while True:
        async with session.ws_connect(url + "/ws") as ws:
            async for message in ws:
                if message.type != aiohttp.WSMsgType.TEXT:
                    break
        await asyncio.sleep(1.0)


async def _ask_page(session: aiohttp.ClientSession, url: str) -> None:
    """Ask for the page's data every PAGE_EVERY_S, as an open dashboard does."""
    while True:
        now = time.time()
        for path in ("/api/v1/gpus", f"/api/v1/history?from={now - 3600:.0f}&to={now:.0f}"):
            with contextlib.suppress(aiohttp.ClientError):
                async with session.get(url + path) as response:
                    await response.read()
        await asyncio.sleep(PAGE_EVERY_S)
