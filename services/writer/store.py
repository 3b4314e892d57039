"""The writer's SQL: the one module that writes the SQLite file."""

from __future__ import annotations

import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from common.dbfile import database_bytes
from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from common.schema import ROLLUP_LEVELS_S, migrate, rollup_table
from services.writer import rollups

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 5000

_INSERT_SAMPLE = (
    f"INSERT OR IGNORE INTO samples (gpu_id, ts, error, {', '.join(METRIC_NAMES)}) "
    f"VALUES (?, ?, ?, {', '.join('?' for _ in METRIC_NAMES)})"
)
_UPSERT_GPU = """
INSERT INTO gpus (
    gpu_uuid, host, gpu_index, gpu_name, pci_bus_id, driver_version, first_ts, last_ts, interval_s
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (gpu_uuid) DO UPDATE SET
    host = excluded.host, gpu_index = excluded.gpu_index, gpu_name = excluded.gpu_name,
    pci_bus_id = excluded.pci_bus_id,
    driver_version = coalesce(excluded.driver_version, gpus.driver_version),
    first_ts = min(gpus.first_ts, excluded.first_ts), last_ts = max(gpus.last_ts, excluded.last_ts),
    interval_s = excluded.interval_s
RETURNING gpu_id
"""

_UPSERT_POSITION = """
INSERT INTO positions (sampler_id, host, seq, updated_ts) VALUES (?, ?, ?, ?)
ON CONFLICT (sampler_id) DO UPDATE SET
    seq = max(positions.seq, excluded.seq), updated_ts = excluded.updated_ts
"""


@dataclass(frozen=True)
class PurgeResult:
    """What one purge and VACUUM did."""

    rows_deleted: int
    bytes_before: int
    bytes_after: int
    seconds: float


def file_bytes(db_path: Path) -> int:
    """Return the size of the database with its WAL, in bytes (0 when absent)."""
    return database_bytes(db_path) or 0


def connect(db_path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> sqlite3.Connection:
    """Open the file for writing in autocommit mode with the writer's pragmas, migrated.

    synchronous=NORMAL in WAL mode: a power cut can lose the last commits but never corrupts
    the file; FULL would fsync every batch for no gain a monitor needs. busy_timeout_ms is how
    long a write waits for another connection's lock before it fails with "database is locked".
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        migrate(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


class Store:
    """Batches of ticks into `gpus` and `samples`, one transaction per batch."""

    def __init__(self, db_path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
        self.db_path = db_path
        self.busy_timeout_ms = busy_timeout_ms
        self._conn: sqlite3.Connection | None = None

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = connect(self.db_path, self.busy_timeout_ms)
        return self._conn

    def close(self) -> None:
        """Close the connection; the next write opens a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def positions(self) -> dict[str, tuple[str, int]]:
        """Return {sampler_id: (host, seq)}: how far each sampler run is stored."""
        rows = self._connection().execute("SELECT sampler_id, host, seq FROM positions")
        return {sampler_id: (host, seq) for sampler_id, host, seq in rows}

    def write(self, ticks: list[Tick], positions: dict[str, tuple[str, int]] | None = None) -> int:
        """Store the ticks and runs' positions in one transaction; return the readings written.

        Raises sqlite3.Error and leaves nothing half-written; the caller keeps the batch.
        """
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            gpu_ids = self._upsert_gpus(conn, ticks)
            rows = [
                (gpu_ids[gpu.uuid], tick.ts, gpu.error, *gpu.metric_values())
                for tick in ticks
                for gpu in tick.gpus
            ]
            conn.executemany(_INSERT_SAMPLE, rows)
            rollups.refresh(conn, ticks, gpu_ids)
            if positions:
                updated_ts = max(tick.ts for tick in ticks)
                conn.executemany(
                    _UPSERT_POSITION,
                    [(sid, host, seq, updated_ts) for sid, (host, seq) in positions.items()],
                )
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return len(rows)

    @staticmethod
    def _upsert_gpus(conn: sqlite3.Connection, ticks: list[Tick]) -> dict[str, int]:
        """Record each GPU of the batch once, with its newest identity; return uuid -> gpu_id."""
        first_ts: dict[str, float] = {}
        newest: dict[str, tuple[Tick, GpuReading]] = {}
        for tick in ticks:
            for gpu in tick.gpus:
                first_ts[gpu.uuid] = min(first_ts.get(gpu.uuid, tick.ts), tick.ts)
                current = newest.get(gpu.uuid)
                if current is None or tick.ts >= current[0].ts:
                    newest[gpu.uuid] = (tick, gpu)
        return {
            uuid: conn.execute(
                _UPSERT_GPU,
                (
                    uuid,
                    tick.host,
                    gpu.index,
                    gpu.name,
                    gpu.pci_bus_id,
                    tick.driver_version,
                    first_ts[uuid],
                    tick.ts,
                    tick.interval_s,
                ),
            ).fetchone()[0]
            for uuid, (tick, gpu) in newest.items()
        }

    def purge(self, before_ts: float) -> PurgeResult:
        """Delete readings older than before_ts, commit, close, then VACUUM on a new connection."""
        started = time.monotonic()
        bytes_before = file_bytes(self.db_path)
        conn = self._connection()
        deleted = 0
        for (gpu_id,) in conn.execute("SELECT gpu_id FROM gpus").fetchall():
            deleted += conn.execute(  # per GPU, so that the (gpu_id, ts) key bounds the scan
                "DELETE FROM samples WHERE gpu_id = ? AND ts < ?", (gpu_id, before_ts)
            ).rowcount
            for level_s in ROLLUP_LEVELS_S:
                conn.execute(
                    f"DELETE FROM {rollup_table(level_s)} WHERE gpu_id = ? AND ts < ?",
                    (gpu_id, before_ts),
                )
        conn.execute("DELETE FROM gpus WHERE last_ts < ?", (before_ts,))
        conn.execute("DELETE FROM positions WHERE updated_ts < ?", (before_ts,))
        self.close()
        vacuum = sqlite3.connect(self.db_path, isolation_level=None)
        try:
            vacuum.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            vacuum.execute("VACUUM")
            vacuum.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            vacuum.close()
        return PurgeResult(
            deleted, bytes_before, file_bytes(self.db_path), time.monotonic() - started
        )
