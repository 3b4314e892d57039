"""Write a synthetic history database through the writer's own storage code.

    python -m tests.bench.generate --days 30 --gpus 8 --hosts 1 --interval 60 --out PATH

Readings come from the simulated GPUs read through the sampler's NVML reader with a clock that
steps through the past, so the values, their units and their nulls are what the sampler sends.
The last tick is at the current time, aligned to the interval.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from common.messages import Tick
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from services.writer.store import Store, file_bytes

TICKS_PER_COMMIT = 1000


class _SteppedClock:
    """A wall clock that a generator moves by hand."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def host_ticks(
    host: str, gpus: int, first_ts: float, count: int, interval_s: float
) -> Iterator[Tick]:
    """Yield `count` ticks of one simulated host, starting at first_ts."""
    clock = _SteppedClock()
    reader = GpuReader(SimulatedNvml(gpus, host=host, clock=clock))
    reader.start()
    for seq in range(count):
        clock.now_s = first_ts + seq * interval_s
        yield build_tick(reader.read(), host, f"gen-{host}", seq, clock.now_s, interval_s)


def generate(out: Path, days: float, gpus: int, hosts: int, interval_s: float) -> int:
    """Write the database; return the readings written."""
    count = int(days * 86400 / interval_s)
    last_ts = (time.time() // interval_s) * interval_s
    first_ts = last_ts - (count - 1) * interval_s
    store = Store(out)
    streams = [host_ticks(f"host{h:02d}", gpus, first_ts, count, interval_s) for h in range(hosts)]
    written, batch = 0, []
    for ticks in zip(*streams, strict=True):
        batch.extend(ticks)
        if len(batch) >= TICKS_PER_COMMIT:
            written += store.write(batch)
            batch = []
    if batch:
        written += store.write(batch)
    store.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate, and report size and time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per host")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--interval", type=float, default=60, help="seconds between ticks")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the simulated fan is not supported: expected
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new path")
    started = time.perf_counter()
    written = generate(args.out, args.days, args.gpus, args.hosts, args.interval)
    elapsed = time.perf_counter() - started
    size = file_bytes(args.out)
    sys.stdout.write(
        f"{written:,} readings in {elapsed:.1f} s to {args.out}: {size / 1e6:.1f} MB, "
        f"{size / max(written, 1):.0f} bytes per reading\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
