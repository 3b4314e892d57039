"""Processes, usage, energy and /api/v1/gpus through the real web process on a month of history.

    python -m tests.bench.usage --days 30 --gpus 8 --out DIR

Writes (through the writer's Store) a file of `days` of 1-minute ticks of one host whose GPUs
carry processes: on each GPU a run of jobs of 2 to 12 hours with 1-hour breaks, each job's memory
stepping up twice, and one process that runs the whole time on GPU 0; then starts
`python -m services.web` on it and times each endpoint (median and p99 of the timed requests),
as history.py does. Prints a table; the file and the web log stay in DIR.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import random
import sqlite3
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import msgspec

from common.messages import GpuProcess, Tick
from services.writer.store import file_bytes
from tests.bench.generate import fast_host_ticks, write_ticks
from tests.bench.procs import serving_web
from tests.bench.table import median, ms, p99

log = logging.getLogger(__name__)

GIB = 1 << 30
REPS = 20


def _jobs(gpus: int, first_ts: float, last_ts: float) -> list[list[tuple[float, float, int]]]:
    """Return per GPU its jobs as (start_ts, end_ts, pid)."""
    rng = random.Random(8)
    made = []
    pid = 10_000
    for _ in range(gpus):
        jobs, ts = [], first_ts
        while ts < last_ts:
            length_s = rng.uniform(2, 12) * 3600
            pid += 1
            jobs.append((ts, ts + length_s, pid))
            ts += length_s + 3600
        made.append(jobs)
    return made


def ticks_with_processes(gpus: int, days: float) -> Iterator[Tick]:
    """Yield the generator's fast ticks of one host, each GPU's process list filled in."""
    count = int(days * 1440)
    last_ts = (time.time() // 60) * 60
    first_ts = last_ts - (count - 1) * 60
    jobs = _jobs(gpus, first_ts, last_ts)
    cursor = [0] * gpus
    users = ("alice", "bob", "carol", "dave")
    for tick in fast_host_ticks("host00", gpus, first_ts, count, 60.0):
        readings = []
        for gpu in tick.gpus:
            on_gpu = jobs[gpu.index]
            while cursor[gpu.index] < len(on_gpu) - 1 and on_gpu[cursor[gpu.index]][1] < tick.ts:
                cursor[gpu.index] += 1
            start_ts, end_ts, pid = on_gpu[cursor[gpu.index]]
            processes = []
            if start_ts <= tick.ts < end_ts:
                step = min(2, int(3 * (tick.ts - start_ts) / (end_ts - start_ts)))
                processes.append(
                    GpuProcess(
                        pid=pid,
                        used_mem_bytes=(20 + 10 * step) * GIB,
                        visible=True,
                        name="python",
                        cmdline=f"python train.py --job {pid}",
                        user=users[pid % len(users)],
                        container_id=f"{pid:064x}",
                        container_name=f"job-{pid}",
                    )
                )
            if gpu.index == 0:
                processes.append(GpuProcess(pid=77, used_mem_bytes=GIB))  # hidden, all month
            readings.append(msgspec.structs.replace(gpu, processes=processes))
        yield msgspec.structs.replace(tick, gpus=readings)


def generate(out: Path, days: float, gpus: int) -> int:
    """Write the file; return the readings written."""
    return write_ticks(out, ticks_with_processes(gpus, days))


async def _time(session: aiohttp.ClientSession, url: str) -> tuple[list[float], int]:
    seconds, status = [], 0
    for _ in range(REPS + 1):
        started = time.perf_counter()
        async with session.get(url) as response:
            await response.read()
            status = response.status
        seconds.append(time.perf_counter() - started)
    return seconds[1:], status  # the first warms caches


def measure(path: Path, work: Path) -> list[tuple[str, str]]:
    """Start the web process on the file and time each endpoint; return (case, timing) rows."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    last_ts, uuid = conn.execute(
        "SELECT max(last_ts), (SELECT gpu_uuid FROM gpus ORDER BY gpu_id LIMIT 1) FROM gpus"
    ).fetchone()
    conn.close()
    to_s = last_ts + 60
    cases = [
        ("gpus (with processes and idle)", "/api/v1/gpus"),
        ("processes, newest", f"/api/v1/processes?gpu={uuid}"),
        ("processes, at 15 days ago", f"/api/v1/processes?gpu={uuid}&at={to_s - 15 * 86400}"),
    ]
    for label, span_s in (("24h", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400)):
        window = f"from={to_s - span_s:.0f}&to={to_s:.0f}"
        cases.append((f"usage by user, {label}", f"/api/v1/usage?{window}&by=user"))
        cases.append((f"energy, {label}", f"/api/v1/energy?{window}"))
    rows = []
    with serving_web(path, work / "web-usage.log") as url:

        async def run_all() -> None:
            timeout = aiohttp.ClientTimeout(total=120)
            async with aiohttp.ClientSession(timeout=timeout) as session:
                for label, path_query in cases:
                    seconds, status = await _time(session, url + path_query)
                    shown = f"{ms(median(seconds))} (p99 {ms(p99(seconds))})"
                    rows.append((label, shown if status == 200 else f"HTTP {status}"))

        asyncio.run(run_all())
    return rows


def main(argv: list[str] | None = None) -> int:
    """Generate the file, time the endpoints, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--out", type=Path, required=True, help="a directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"usage-{args.days:g}d-{args.gpus}gpus.db"
    if not path.exists():
        started = time.perf_counter()
        written = generate(path, args.days, args.gpus)
        sys.stdout.write(
            f"{written:,} readings in {time.perf_counter() - started:.0f} s,"
            f" {file_bytes(path) / 1e6:.1f} MB\n"
        )
    conn = sqlite3.connect(path)
    spans, identities = conn.execute(
        "SELECT (SELECT count(*) FROM proc_spans), (SELECT count(*) FROM proc_identities)"
    ).fetchone()
    conn.close()
    sys.stdout.write(f"{spans:,} spans, {identities:,} process identities\n")
    for label, shown in measure(path, args.out):
        sys.stdout.write(f"{label:34} {shown}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
