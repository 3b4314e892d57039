"""Ingest: readings per second from a full-speed publisher into committed rows of a real writer.

The bench binds the PUB socket a sampler would, starts `python -m services.writer` subscribed to
it, waits for its subscription, sends N ticks of 8 GPUs (consecutive seq and ts, encoded before
the clock starts) as fast as ZeroMQ takes them, and polls the writer's stored position until the
last tick is committed. The baseline (tests.bench.ingest_baseline) is the fair one: a process
that receives the same ticks over ZeroMQ, decodes them with the same codec and inserts their rows
into `samples` of a fresh file with the same schema, 5000 rows per commit, and nothing more. The
old baseline, raw executemany of rows built before the clock starts (no receive, no decode),
is kept as a note.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from common.messages import Tick
from common.metrics import METRIC_NAMES
from common.schema import SCHEMA_VERSION, migrate
from tests.bench.procs import bench_env, cpu_seconds, running, wait_until
from tests.bench.publisher import bound_publisher, ticks, wait_subscribed
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, times

log = logging.getLogger(__name__)

RAW_ROWS_PER_COMMIT = 5000
MIN_SHARE = 0.8
COMMIT_TIMEOUT_S = 300.0
_RAW_INSERT = (
    f"INSERT INTO samples (gpu_id, ts, error, {', '.join(METRIC_NAMES)}) "
    f"VALUES ({', '.join('?' for _ in range(len(METRIC_NAMES) + 3))})"
)


def run(sizes: Sizes, work: Path, report: Report) -> None:
    """Measure the writer, the fair baseline and the raw insert on the same ticks."""
    sent = ticks(sizes.ingest_ticks, sizes.ingest_interval_s)
    readings = sum(len(tick.gpus) for tick in sent)
    writer_s, writer_cpu_s = writer_seconds(sent, work)
    fair_s, fair_cpu_s = fair_seconds(sent, work / "ingest-fair.db", work)
    raw_s = raw_seconds(sent, work / "ingest-raw.db")
    value, baseline = readings / writer_s, readings / fair_s
    share = value / baseline
    report.add(
        Row(
            "ingest, publisher -> writer -> committed rows",
            f"{value:,.0f} readings/s",
            f"{baseline:,.0f} readings/s receive+decode+executemany",
            times(share),
            f">= {MIN_SHARE:.2f}x",
            share >= MIN_SHARE,
        )
    )
    report.add(
        Row(
            "ingest, CPU per reading (writer vs fair baseline)",
            f"{1e6 * writer_cpu_s / readings:.1f} us",
            f"{1e6 * fair_cpu_s / readings:.1f} us receive+decode+executemany",
            times(fair_cpu_s / writer_cpu_s) if writer_cpu_s else "-",
        )
    )
    report.note(
        f"ingest: {len(sent):,} ticks x 8 GPUs = {readings:,} readings, ts "
        f"{sizes.ingest_interval_s:g} s apart; CPU per reading: the writer "
        f"{1e6 * writer_cpu_s / readings:.1f} us, the fair baseline "
        f"{1e6 * fair_cpu_s / readings:.1f} us; the old baseline, raw executemany of rows built "
        f"beforehand, {readings / raw_s:,.0f} rows/s ({1e6 * raw_s / readings:.1f} us a row, "
        f"the writer {value / (readings / raw_s):.2f}x of it)"
    )


def fair_seconds(sent: list[Tick], db_path: Path, work: Path) -> tuple[float, float]:
    """Return (seconds from the first send to the baseline's last commit, its CPU seconds)."""
    for path in (db_path, *db_path.parent.glob(db_path.name + "-*")):
        path.unlink(missing_ok=True)
    frames = [tick.to_frames() for tick in sent]
    with bound_publisher() as (socket, endpoint):
        command = [
            sys.executable,
            "-m",
            "tests.bench.ingest_baseline",
            str(db_path),
            endpoint,
            str(len(frames)),
        ]
        log_path = work / "ingest-baseline.log"
        with running(command, bench_env(), log_path, stdout=subprocess.PIPE) as baseline:
            wait_subscribed(socket, 30)
            started = time.monotonic()
            for message in frames:
                socket.send_multipart(message, copy=False)
            out, _ = baseline.communicate(timeout=COMMIT_TIMEOUT_S)
    if baseline.returncode != 0:
        raise RuntimeError(f"the ingest baseline failed ({baseline.returncode}): see {log_path}")
    result = json.loads(out.decode().strip().splitlines()[-1])
    conn = sqlite3.connect(db_path)
    try:
        stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
    finally:
        conn.close()
    check_stored(stored, sent, "the baseline")
    return result["done_s"] - started, result["cpu_s"]


def check_stored(stored: int, sent: list[Tick], who: str) -> None:
    """Fail the figure unless every reading sent was stored: a fast loss is no speed."""
    expected = sum(len(tick.gpus) for tick in sent)
    if stored != expected:
        raise AssertionError(f"{who} stored {stored} of {expected} readings")


def writer_seconds(sent: list[Tick], work: Path) -> tuple[float, float]:
    """Return (seconds from the first send to the last commit, writer CPU seconds meanwhile)."""
    frames = [tick.to_frames() for tick in sent]
    db_path = work / "ingest-writer.db"
    log_path = work / "writer-ingest.log"
    last_seq = sent[-1].seq
    with bound_publisher() as (socket, endpoint):
        env = bench_env({"PCW_DB_PATH": str(db_path), "PCW_SUBSCRIBE": endpoint})
        with running([sys.executable, "-m", "services.writer"], env, log_path) as writer:
            wait_subscribed(socket, 30)
            wait_until(db_path.exists, 30, "the writer's file", writer, log_path)
            conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, isolation_level=None)
            try:
                wait_until(lambda: _migrated(conn), 30, "the writer's schema", writer, log_path)
                cpu_before = cpu_seconds(writer.pid)
                started = time.perf_counter()
                for message in frames:
                    socket.send_multipart(message, copy=False)
                wait_until(
                    lambda: (_position(conn) or -1) >= last_seq,
                    COMMIT_TIMEOUT_S,
                    f"tick {last_seq} committed",
                    writer,
                    log_path,
                )
                elapsed = time.perf_counter() - started
                cpu_s = cpu_seconds(writer.pid) - cpu_before
                stored = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
            finally:
                conn.close()
    check_stored(stored, sent, "the writer")
    return elapsed, cpu_s


def _migrated(conn: sqlite3.Connection) -> bool:
    try:
        return conn.execute("PRAGMA user_version").fetchone()[0] >= SCHEMA_VERSION
    except sqlite3.OperationalError:  # the file is being created
        return False


def _position(conn: sqlite3.Connection) -> int | None:
    try:
        return conn.execute("SELECT max(seq) FROM positions").fetchone()[0]
    except sqlite3.OperationalError:  # the writer has not created its tables yet
        return None


def raw_seconds(sent: list[Tick], db_path: Path) -> float:
    """Return the seconds raw batched executemany takes to commit the same readings."""
    for path in (db_path, *db_path.parent.glob(db_path.name + "-*")):
        path.unlink(missing_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None)
    try:
        migrate(conn)
        conn.execute("PRAGMA synchronous = NORMAL")  # as the writer's connection
        gpu_ids = {}
        for gpu in sent[0].gpus:
            gpu_ids[gpu.uuid] = conn.execute(
                "INSERT INTO gpus (gpu_uuid, host, gpu_index, gpu_name, first_ts, last_ts) "
                "VALUES (?, ?, ?, ?, ?, ?) RETURNING gpu_id",
                (gpu.uuid, sent[0].host, gpu.index, gpu.name, sent[0].ts, sent[-1].ts),
            ).fetchone()[0]
        rows = [
            (gpu_ids[gpu.uuid], tick.ts, gpu.error, *gpu.metric_values())
            for tick in sent
            for gpu in tick.gpus
        ]
        started = time.perf_counter()
        for first in range(0, len(rows), RAW_ROWS_PER_COMMIT):
            conn.execute("BEGIN")
            conn.executemany(_RAW_INSERT, rows[first : first + RAW_ROWS_PER_COMMIT])
            conn.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        conn.close()
