"""Maintenance: bytes written by one hourly purge, incremental reclaim against a full VACUUM.

On a copy of a generated file, the writer's own `Store.purge` removes the file's oldest hour
(what the hourly run removes once the file is full), as PCW_VACUUM=incremental (the default)
and, on a second copy, as PCW_VACUUM=full (every run a VACUUM: the behaviour before). Bytes
written are read from /proc/self/io around the run: `wchar`, what the process passed to write()
(the file, its WAL and VACUUM's temporary copy alike, whatever the file system), and, where the
file system accounts it, `write_bytes` (what reached the storage layer).

    python -m tests.bench.maintenance --days 30 --gpus 8 --hosts 1 --interval 60
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from services.writer.store import Store, file_bytes
from tests.bench import generate
from tests.bench.databases import Generated
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, mb, times

log = logging.getLogger(__name__)

HOUR_S = 3600.0
# An incremental run may write at most this share of what a VACUUM of the same file writes.
TARGET_RATIO = 0.10


@dataclass(frozen=True)
class Run:
    """One purge: what it deleted and wrote, in bytes, and how long it took."""

    rows_deleted: int
    wchar_bytes: int
    storage_bytes: int
    seconds: float


def io_counters() -> dict[str, int]:
    """Return this process's /proc/self/io counters."""
    counters = {}
    for line in Path("/proc/self/io").read_text().splitlines():
        name, _, value = line.partition(":")
        counters[name] = int(value)
    return counters


def oldest_ts(path: Path) -> float:
    """Return the time of the file's oldest reading."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return float(conn.execute("SELECT min(ts) FROM samples").fetchone()[0])
    finally:
        conn.close()


def purge_once(source: Path, work: Path, vacuum: str) -> Run:
    """Copy source into work, then purge its oldest hour as the writer does; return the run."""
    copy = work / f"maintenance-{vacuum}.db"
    shutil.copyfile(source, copy)
    cutoff_ts = oldest_ts(copy) + HOUR_S
    store = Store(copy)
    store.positions()  # open and migrate first: only the maintenance run is measured
    before = io_counters()
    result = store.purge(cutoff_ts, vacuum)
    after = io_counters()
    store.close()
    copy.unlink()
    for suffix in ("-wal", "-shm"):
        copy.with_name(copy.name + suffix).unlink(missing_ok=True)
    return Run(
        result.rows_deleted,
        after["wchar"] - before["wchar"],
        after["write_bytes"] - before["write_bytes"],
        result.seconds,
    )


def measure(name: str, path: Path, work: Path, report: Report) -> None:
    """Add the row of one file: bytes written by an incremental run against a full one."""
    size = file_bytes(path)
    incremental = purge_once(path, work, "incremental")
    full = purge_once(path, work, "full")
    report.add(
        Row(
            f"bytes written per hourly purge, {name}",
            f"{mb(incremental.wchar_bytes)} of a {mb(size)} file in {incremental.seconds:.2f} s",
            f"{mb(full.wchar_bytes)} in {full.seconds:.2f} s (VACUUM every run)",
            times(incremental.wchar_bytes / full.wchar_bytes),
            f"<= {TARGET_RATIO:g}x",
            incremental.wchar_bytes <= TARGET_RATIO * full.wchar_bytes,
        )
    )
    report.notes.append(
        f"maintenance, {name}: {incremental.rows_deleted:,} readings purged (the oldest hour); "
        f"written to storage (write_bytes) {mb(incremental.storage_bytes)} incremental, "
        f"{mb(full.storage_bytes)} full (0 on a file system that does not account it, e.g. tmpfs)"
    )


def run(sizes: Sizes, files: list[Generated], work: Path, report: Report) -> None:
    """Measure one maintenance run on each generated file."""
    del sizes  # the files are the sizes
    for item in files:
        measure(item.spec.name, item.path, work, report)


def main(argv: list[str] | None = None) -> int:
    """Generate a file of the given shape, measure one maintenance run on it, print the row."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.maintenance")
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--gpus", type=int, default=8)
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--interval", type=float, default=60)
    parser.add_argument("--file", type=Path, help="measure this file instead (it is copied)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    logging.getLogger("services").setLevel(logging.WARNING)
    report = Report([], [])
    with tempfile.TemporaryDirectory(prefix="pcw-maintenance-") as folder:
        work = Path(folder)
        path = args.file
        name = f"{args.days:g} d x {args.hosts * args.gpus} GPUs x {args.interval:g} s"
        if path is None:
            path = work / "generated.db"
            started = time.monotonic()
            generate.generate(path, args.days, args.gpus, args.hosts, args.interval)
            log.info("generated %s in %.0f s", name, time.monotonic() - started)
        else:
            name = path.name
        measure(name, path, work, report)
    for row in report.rows:
        sys.stdout.write(" | ".join(row.cells()) + "\n")
    sys.stdout.write("".join(f"- {note}\n" for note in report.notes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
