"""The fair baseline of ingest: receive, decode and insert in one process, and nothing more.

    python -m tests.bench.ingest_baseline DB_PATH ENDPOINT TICKS

Creates DB_PATH with the writer's schema (common.schema.migrate), subscribes to ENDPOINT, and
takes TICKS ticks: each received over ZeroMQ as the writer receives it, decoded and validated
with the same codec (common.messages.Tick.from_frames), turned into `samples` rows with the same
conversion (GpuReading.metric_values), and inserted with executemany, RAW_ROWS_PER_COMMIT rows
per transaction. No rollups, health rows, process spans, alerts or positions: what any writer
must pay per reading. At the end one line of JSON goes to stdout: {"done_s": time.monotonic()
after the last commit, "cpu_s": CPU seconds this process used from its first message}.
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time

import zmq

from common.messages import TOPIC, Tick
from common.metrics import METRIC_NAMES
from common.schema import migrate

RAW_ROWS_PER_COMMIT = 5000
RECEIVE_QUEUE = 100_000  # as the writer's SUB (services/writer/sources.py)
INSERT = (
    f"INSERT INTO samples (gpu_id, ts, error, {', '.join(METRIC_NAMES)}) "
    f"VALUES ({', '.join('?' for _ in range(len(METRIC_NAMES) + 3))})"
)
_NEW_GPU = (
    "INSERT INTO gpus (gpu_uuid, host, gpu_index, gpu_name, first_ts, last_ts) "
    "VALUES (?, ?, ?, ?, ?, ?) RETURNING gpu_id"
)


def main(argv: list[str] | None = None) -> int:
    """Subscribe, take the ticks, insert them; print when the last commit was done."""
    db_path, endpoint, count = (argv or sys.argv[1:])[:3]
    conn = sqlite3.connect(db_path, isolation_level=None)
    migrate(conn)
    conn.execute("PRAGMA synchronous = NORMAL")  # as the writer's connection
    gpu_ids: dict[str, int] = {}
    rows: list[tuple[object, ...]] = []
    with zmq.Context() as context, context.socket(zmq.SUB) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.RCVHWM, RECEIVE_QUEUE)
        socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
        socket.connect(endpoint)
        frames = socket.recv_multipart()
        cpu_at_first_s = time.process_time()
        for taken in range(int(count)):
            if taken:
                frames = socket.recv_multipart()
            tick = Tick.from_frames(frames)
            for gpu in tick.gpus:
                gpu_id = gpu_ids.get(gpu.uuid)
                if gpu_id is None:
                    new = (gpu.uuid, tick.host, gpu.index, gpu.name, tick.ts, tick.ts)
                    gpu_id = gpu_ids[gpu.uuid] = conn.execute(_NEW_GPU, new).fetchone()[0]
                rows.append((gpu_id, tick.ts, gpu.error, *gpu.metric_values()))
            if len(rows) >= RAW_ROWS_PER_COMMIT:
                _commit(conn, rows)
                rows = []
        _commit(conn, rows)
    done_s = time.monotonic()
    cpu_s = time.process_time() - cpu_at_first_s
    conn.close()
    sys.stdout.write(json.dumps({"done_s": done_s, "cpu_s": cpu_s}) + "\n")
    return 0


def _commit(conn: sqlite3.Connection, rows: list[tuple[object, ...]]) -> None:
    if rows:
        conn.execute("BEGIN")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")


if __name__ == "__main__":
    sys.exit(main())
