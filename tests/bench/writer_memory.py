"""The writer's memory while its database fails under a fast stream of 64-GPU ticks.

A real writer process subscribes to the bench's publisher and stores a few ticks; then a
file-size limit (RLIMIT_FSIZE, set on the running writer) makes every write of the database
fail, as a full disk does, and the publisher sends 64-GPU ticks as fast as `--rate` asks for
`--seconds`. The writer's RSS is read from /proc every second; its status file (small enough to
fit under the limit) says what it holds and what it dropped.

    python -m tests.bench.writer_memory [--rate 200] [--seconds 60]
"""

from __future__ import annotations

import argparse
import logging
import resource
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

import msgspec

from common.status import status_path
from tests.bench.generate import fast_host_ticks
from tests.bench.procs import bench_env, memory_bytes, running, wait_until
from tests.bench.publisher import bound_publisher, wait_subscribed

log = logging.getLogger("tests.bench.writer_memory")

GPUS = 64
FAIL_ABOVE_BYTES = 4096  # every write past this size fails (EFBIG): the database fails


def _stored_ticks(db_path: Path) -> int:
    try:
        conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
        try:
            return int(conn.execute("SELECT count(DISTINCT ts) FROM readings").fetchone()[0])
        finally:
            conn.close()
    except sqlite3.Error:
        return 0


def measure(rate_per_s: float, seconds: float, work: Path, buffer_bytes: int | None) -> dict:
    """Run the writer, fail its database, stream ticks; return the figures."""
    db_path = work / "gpu_stats.db"
    with bound_publisher() as (publisher, endpoint):
        env = bench_env({"PCW_DB_PATH": str(db_path), "PCW_SUBSCRIBE": endpoint})
        if buffer_bytes is not None:
            env["PCW_WRITER_BUFFER_BYTES"] = str(buffer_bytes)
        command = [sys.executable, "-m", "services.writer"]
        with running(command, env, work / "writer.log") as writer:
            wait_subscribed(publisher, 30.0)
            interval_s = 1.0 / rate_per_s
            # one second apart in their own time (the smallest interval a tick may carry),
            # sent faster: the writer cares about order, not about the clock
            ticks = fast_host_ticks("benchhost", GPUS, time.time(), 10**9, 1.0)
            for _ in range(3):
                publisher.send_multipart(next(ticks).to_frames())
            wait_until(lambda: _stored_ticks(db_path) >= 3, 30.0, "the first ticks stored")
            rss_start = memory_bytes(writer.pid)[0]
            resource.prlimit(writer.pid, resource.RLIMIT_FSIZE, (FAIL_ABOVE_BYTES, -1))
            started = time.monotonic()
            sent, rss_max, next_sample = 0, rss_start, started
            while (now := time.monotonic()) < started + seconds:
                due = int((now - started) * rate_per_s)
                while sent < due:
                    publisher.send_multipart(next(ticks).to_frames())
                    sent += 1
                if now >= next_sample:
                    rss_max = max(rss_max, memory_bytes(writer.pid)[0])
                    next_sample += 1.0
                time.sleep(interval_s / 2)
            time.sleep(2.0)  # let it take what is queued
            rss_end = memory_bytes(writer.pid)[0]
            status = msgspec.json.decode(status_path(db_path).read_bytes())
    return {
        "ticks_sent": sent,
        "rss_start_mb": rss_start / 1e6,
        "rss_max_mb": max(rss_max, rss_end) / 1e6,
        "rss_end_mb": rss_end / 1e6,
        "buffered_ticks": status.get("buffered_ticks"),
        "buffered_bytes": status.get("buffered_bytes"),
        "dropped_ticks": status.get("dropped_ticks"),
        "last_error": status.get("last_error"),
    }


def main(argv: list[str] | None = None) -> int:
    """Measure and log the figures; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=200.0, help="ticks per second")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long to stream")
    parser.add_argument("--buffer-bytes", type=int, default=None, help="PCW_WRITER_BUFFER_BYTES")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="pcw-writer-memory-") as work:
        figures = measure(args.rate, args.seconds, Path(work), args.buffer_bytes)
    log.info(
        "%d GPUs, %d ticks sent at %g/s over %g s while the database failed:",
        GPUS,
        figures["ticks_sent"],
        args.rate,
        args.seconds,
    )
    for name, value in figures.items():
        log.info("  %s: %s", name, f"{value:.1f}" if isinstance(value, float) else value)
    return 0


if __name__ == "__main__":
    sys.exit(main())
