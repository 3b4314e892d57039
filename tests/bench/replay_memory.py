"""The sampler's replay buffer full of 64-GPU ticks: bytes held and RSS, packed vs as published.

The ticks are read once through the sampler's own reader from simulated GPUs (each with its
process list) and encoded as the sampler publishes them, into a file. Then, for each bound, a
fresh process that imports what the sampler imports (tests/bench/replay_fill.py) builds the
ReplayBuffer from the settings as the sampler does and adds every tick of the file: the same
ticks for both. Its RSS and PSS are read from /proc before and after the fill.

- as published: each tick's frames kept as they were sent, as the buffer did before it packed
  ticks, under the same `PCW_REPLAY_TICKS` and `PCW_REPLAY_BYTES` (the baseline);
- bytes: `PCW_REPLAY_TICKS` and `PCW_REPLAY_BYTES`, as the sampler runs now.

    python -m tests.bench.replay_memory [--gpus 64] [--ticks 1440] [--replay-bytes 16777216]
"""

from __future__ import annotations

import argparse
import json
import logging
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from common.config import load_config
from services.sampler.nvml import GpuReader, load_nvml, process_resolver
from services.sampler.ticks import build_tick
from tests.bench.procs import REPO, bench_env, memory_bytes, stop
from tests.bench.replay_fill import write_ticks
from tests.bench.table import Report, Row, mb, times

log = logging.getLogger(__name__)

READY_TIMEOUT_S = 30.0
FILL_TIMEOUT_S = 300.0
MIB = 1 << 20


@dataclass(frozen=True)
class Filled:
    """One child's figures: its memory (bytes) before and after the fill, and what it holds."""

    mode: str
    rss_before: int
    rss_after: int
    pss_after: int
    held_ticks: int
    held_bytes: int
    first_seq: int | None
    last_seq: int | None
    bound: str


@dataclass(frozen=True)
class Comparison:
    """Both fills of the same ticks: the as-published baseline and the packed buffer."""

    gpus: int
    ticks: int
    tick_bytes: float  # mean frames' bytes of one tick
    replay_bytes: int
    as_published: Filled
    bytes_bound: Filled


def simulated_ticks(gpus: int, count: int, interval_s: float = 60.0) -> Iterator[list[bytes]]:
    """Yield the frames of `count` ticks of `gpus` simulated GPUs, read by the sampler's reader."""
    config = load_config(
        {"PCW_SOURCE": "simulated", "PCW_SIM_GPUS": str(gpus), "PCW_HOST_NAME": "benchhost"}
    )
    nvml = load_nvml(config)
    reader = GpuReader(nvml, resolver=process_resolver(config, nvml), host=config.host_name)
    reader.start()
    first_ts = (time.time() // interval_s) * interval_s
    try:
        for seq in range(count):
            reading = reader.read()
            tick_ts = first_ts + seq * interval_s
            tick = build_tick(reading, config.host_name, "bench", seq, tick_ts, interval_s)
            yield tick.to_frames()
    finally:
        reader.close()


def fill_child(ticks_file: Path, mode: str, replay_ticks: int, replay_bytes: int) -> Filled:
    """Run one replay_fill child over the file; return its figures."""
    env = bench_env({"PCW_REPLAY_TICKS": str(replay_ticks), "PCW_REPLAY_BYTES": str(replay_bytes)})
    command = [sys.executable, "-m", "tests.bench.replay_fill", str(ticks_file), mode]
    child = subprocess.Popen(
        command, cwd=REPO, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert child.stdin is not None and child.stdout is not None
    try:
        _expect_line(child, READY_TIMEOUT_S, "ready")
        rss_before, _ = memory_bytes(child.pid)
        child.stdin.write(b"fill\n")
        child.stdin.flush()
        held = json.loads(_expect_line(child, FILL_TIMEOUT_S, "its figures"))
        rss_after, pss_after = memory_bytes(child.pid)
    finally:
        child.stdin.close()
        stop(child)
        child.stdout.close()
    return Filled(mode, rss_before, rss_after, pss_after, **held)


def _expect_line(child: subprocess.Popen[bytes], timeout_s: float, what: str) -> str:
    assert child.stdout is not None
    readable, _, _ = select.select([child.stdout], [], [], timeout_s)
    line = child.stdout.readline().decode().strip() if readable else ""
    if not line:
        raise RuntimeError(f"the replay_fill child gave no {what} (exit status {child.poll()})")
    return line


def measure(gpus: int, ticks: int, replay_bytes: int, work: Path) -> Comparison:
    """Write the ticks once, fill a child under each bound; return both children's figures."""
    ticks_file = work / f"replay-ticks-{gpus}x{ticks}.bin"
    started = time.monotonic()
    total_bytes = write_ticks(ticks_file, simulated_ticks(gpus, ticks))
    log.info(
        "replay memory: %d ticks of %d GPUs read (%.1f MB) in %.0f s",
        ticks,
        gpus,
        total_bytes / 1e6,
        time.monotonic() - started,
    )
    try:
        as_published, bytes_bound = (
            fill_child(ticks_file, mode, ticks, replay_bytes) for mode in ("as-published", "bytes")
        )
    finally:
        ticks_file.unlink(missing_ok=True)
    return Comparison(gpus, ticks, total_bytes / ticks, replay_bytes, as_published, bytes_bound)


def rows(found: Comparison) -> list[Row]:
    """Return the table's rows: bytes held and the sampler's RSS, packed vs as published."""
    old, new = found.as_published, found.bytes_bound
    shape = f"{found.gpus}-GPU ticks"
    return [
        Row(
            f"replay buffer held, {shape}",
            f"{new.held_ticks:,} of {found.ticks:,} ticks in {mb(new.held_bytes)}",
            f"{old.held_ticks:,} of {found.ticks:,} ticks in {mb(old.held_bytes)} as published",
            times(new.held_ticks / old.held_ticks),
            f"<= {found.replay_bytes / MIB:g} MiB (PCW_REPLAY_BYTES)",
            new.held_bytes <= found.replay_bytes,
        ),
        Row(
            f"RSS of a sampler with a full replay buffer, {shape}",
            f"{mb(new.rss_after)} (PSS {mb(new.pss_after)})",
            f"{mb(old.rss_after)} (PSS {mb(old.pss_after)}) as published",
            times(new.rss_after / old.rss_after),
        ),
    ]


def notes(found: Comparison) -> list[str]:
    """Return the notes under the table: tick size, and each fill's growth of RSS."""
    return [
        f"replay memory: one tick of {found.gpus} simulated GPUs with their processes is"
        f" {found.tick_bytes / 1e3:.1f} KB of frames; the fill grew RSS by"
        f" {mb(found.bytes_bound.rss_after - found.bytes_bound.rss_before)} under"
        f" {found.bytes_bound.bound} (held seq {found.bytes_bound.first_seq}-"
        f"{found.bytes_bound.last_seq}), by"
        f" {mb(found.as_published.rss_after - found.as_published.rss_before)} as published"
        f" ({found.as_published.bound})"
    ]


def run(gpus: int, ticks: int, replay_bytes: int, work: Path, report: Report) -> None:
    """Measure both bounds and add their rows and notes to the report."""
    found = measure(gpus, ticks, replay_bytes, work)
    for row in rows(found):
        report.add(row)
    for text in notes(found):
        report.note(text)


def main(argv: list[str] | None = None) -> int:
    """Measure, print the figures and their ratios; return the exit status."""
    defaults = load_config({})
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, default=64, help="simulated GPUs per tick")
    parser.add_argument(
        "--ticks", type=int, default=defaults.replay_ticks, help="ticks fed (PCW_REPLAY_TICKS)"
    )
    parser.add_argument(
        "--replay-bytes", type=int, default=defaults.replay_bytes, help="PCW_REPLAY_BYTES"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)
    # simulated GPUs whose fan is "not supported": expected, not news
    logging.getLogger("services").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory(prefix="pcw-replay-memory-") as work:
        found = measure(args.gpus, args.ticks, args.replay_bytes, Path(work))
    for row in rows(found):
        met = "" if row.met is None else f", target {row.target}: {'met' if row.met else 'MISSED'}"
        sys.stdout.write(f"{row.figure}: {row.value} vs {row.baseline}, {row.ratio}{met}\n")
    sys.stdout.write("".join(f"- {text}\n" for text in notes(found)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
