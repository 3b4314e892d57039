"""/api/v1/gpus on a month in which every GPU was idle but allocated the whole time.

    python -m tests.bench.idle --days 30 --gpus 8 --interval 60 --out DIR

Writes (through the writer's Store) `days` of ticks of one host whose GPUs all read 0 %
utilization while one process holds half their memory (half of the GPUs with a known process
list, half unknown), so each GPU's idle run is the whole file; then starts `python -m services.web`
on it and times the first /api/v1/gpus request and the median of the following ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from common.messages import GpuProcess, GpuReading, Tick
from services.writer.store import file_bytes
from tests.bench.generate import write_ticks
from tests.bench.procs import serving_web
from tests.bench.table import median, ms

GIB = 1 << 30
REPS = 20


def idle_ticks(gpus: int, days: float, interval_s: float) -> Iterator[Tick]:
    """Yield ticks of one host whose GPUs are all idle while holding memory, ending now."""
    count = int(days * 86400 / interval_s)
    last_ts = (time.time() // interval_s) * interval_s
    first_ts = last_ts - (count - 1) * interval_s
    for seq in range(count):
        readings = [
            GpuReading(
                index=index,
                uuid=f"GPU-idle-{index}",
                name="NVIDIA H100",
                util_gpu_pct=0,
                mem_used_bytes=40 * GIB,
                mem_total_bytes=80 * GIB,
                processes=[GpuProcess(pid=1000 + index, used_mem_bytes=40 * GIB, user="carol")]
                if index % 2 == 0
                else None,
            )
            for index in range(gpus)
        ]
        yield Tick("host00", "bench", seq, first_ts + seq * interval_s, interval_s, gpus=readings)


def generate(out: Path, days: float, gpus: int, interval_s: float) -> int:
    """Write the file; return the readings written."""
    return write_ticks(out, idle_ticks(gpus, days, interval_s))


def _get_s(url: str) -> tuple[float, bytes]:
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=300) as response:
        body = response.read()
    return time.perf_counter() - started, body


def measure(path: Path, work: Path) -> tuple[float, float, int]:
    """Start the web process; return the first call's seconds, the median of the next, and
    how many GPUs the last answer flagged."""
    with serving_web(path, work / "web-idle.log") as url:
        first_s, _ = _get_s(url + "/api/v1/gpus")
        later = [_get_s(url + "/api/v1/gpus") for _ in range(REPS)]
    return first_s, median([seconds for seconds, _ in later]), later[-1][1].count(b'"since_ts"')


def main(argv: list[str] | None = None) -> int:
    """Generate the file, time /api/v1/gpus, print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--interval", type=float, default=60.0, help="seconds between ticks")
    parser.add_argument("--out", type=Path, required=True, help="a directory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"idle-{args.days:g}d-{args.gpus}gpus-{args.interval:g}s.db"
    if not path.exists():
        started = time.perf_counter()
        written = generate(path, args.days, args.gpus, args.interval)
        sys.stdout.write(
            f"{written:,} readings in {time.perf_counter() - started:.0f} s,"
            f" {file_bytes(path) / 1e6:.1f} MB\n"
        )
    first_s, later_s, since_count = measure(path, args.out)
    sys.stdout.write(
        f"/api/v1/gpus: first {ms(first_s)}, then median {ms(later_s)} of {REPS};"
        f" {since_count} since_ts in the answer\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
