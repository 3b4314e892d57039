"""Import, once, the history of the original pyCudaWatch found in the same file.

The project this one replaces wrote `gpu_stats.db` with one table, `metrics(id, ts, gpu_util,
mem_used, mem_total, temp)`: GPU 0 of one host, `ts` its local time as ISO text
(datetime.now().isoformat()), memory in bytes as NVML gives it. When the writer opens such a
file, the table is left as it is; at the first tick of this host's GPU 0 (its UUID is known only
then) its rows within the retention become readings of that GPU: util_gpu_pct, mem_used_bytes,
mem_total_bytes and temp_c, the rest null. `ts` is read as local time in this process's time
zone (TZ), as the original wrote it; a time with an offset keeps its offset. The import is
recorded in `legacy_imports`, so a later start imports nothing again.
"""

from __future__ import annotations

import datetime
import logging
import math
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from common.messages import Tick
from common.schema import ROLLUP_LEVELS_S, bucket_start
from services.writer import energy_buckets, rollups

log = logging.getLogger(__name__)

LEGACY_TABLE = "metrics"
LEGACY_COLUMNS = frozenset({"id", "ts", "gpu_util", "mem_used", "mem_total", "temp"})
LEGACY_GPU_INDEX = 0

_INSERT = (
    "INSERT OR IGNORE INTO samples (gpu_id, ts, util_gpu_pct, mem_used_bytes, mem_total_bytes,"
    " temp_c) VALUES (?, ?, ?, ?, ?, ?)"
)
_RECORD = (
    "INSERT INTO legacy_imports (source_table, gpu_uuid, rows_imported, rows_left_out,"
    " imported_ts) VALUES (?, ?, ?, ?, ?)"
)


@dataclass(frozen=True)
class ImportResult:
    """What one import did: readings stored, rows left out (past the retention, unreadable)."""

    imported: int
    too_old: int
    unreadable: int
    first_ts: float | None
    last_ts: float | None


def local_epoch_s(text: object) -> float | None:
    """Return the UTC epoch seconds of an ISO time written in local time, None if unreadable.

    A time without an offset is this process's local time (TZ); in the hour repeated when
    clocks go back, the first of the two is taken.
    """
    if not isinstance(text, str):
        return None
    try:
        moment = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    epoch_s = moment.timestamp()  # naive: local time, as the original's datetime.now()
    return epoch_s if math.isfinite(epoch_s) else None


def _whole(value: object) -> int | None:
    """Return value as an int when it is a finite number (the original stored ints), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value) if math.isfinite(value) else None


def legacy_table_present(conn: sqlite3.Connection) -> bool:
    """Return whether the file holds the original's table, not yet imported."""
    columns = {row[1] for row in conn.execute(f"PRAGMA table_info({LEGACY_TABLE})")}
    if not LEGACY_COLUMNS.issubset(columns):
        return False
    done = conn.execute(
        "SELECT 1 FROM legacy_imports WHERE source_table = ?", (LEGACY_TABLE,)
    ).fetchone()
    return done is None


def import_rows(
    conn: sqlite3.Connection, gpu_id: int, gpu_uuid: str, interval_s: float, cutoff_ts: float
) -> ImportResult:
    """Store the original's rows from cutoff_ts on as readings of gpu_id; record the import.

    Runs in the caller's transaction; the GPU's rollups are recomputed for the buckets touched.
    The rows stream from the old table into `samples`, so that a long history is imported in
    bounded memory: what is held is the start of each finest rollup bucket touched (each coarser
    level's buckets are multiples of it).
    """
    imported = too_old = unreadable = 0
    first_ts, last_ts = math.inf, -math.inf
    finest_s = ROLLUP_LEVELS_S[0]
    buckets: set[float] = set()

    def readings() -> Iterator[tuple[object, ...]]:
        nonlocal imported, too_old, unreadable, first_ts, last_ts
        for ts_text, util, used, total, temp in conn.execute(
            f"SELECT ts, gpu_util, mem_used, mem_total, temp FROM {LEGACY_TABLE} ORDER BY id"
        ):
            ts = local_epoch_s(ts_text)
            if ts is None:
                unreadable += 1
            elif ts < cutoff_ts:
                too_old += 1
            else:
                imported += 1
                first_ts, last_ts = min(first_ts, ts), max(last_ts, ts)
                buckets.add(bucket_start(ts, finest_s))
                yield gpu_id, ts, _whole(util), _whole(used), _whole(total), _whole(temp)

    conn.executemany(_INSERT, readings())
    if imported:
        conn.execute(
            "UPDATE gpus SET first_ts = min(first_ts, ?) WHERE gpu_id = ?", (first_ts, gpu_id)
        )
        rollups.refresh_times(conn, gpu_id, interval_s, buckets)
        energy_buckets.refresh_times(conn, gpu_id, interval_s, buckets)
    conn.execute(_RECORD, (LEGACY_TABLE, gpu_uuid, imported, too_old + unreadable, time.time()))
    return ImportResult(
        imported,
        too_old,
        unreadable,
        first_ts if imported else None,
        last_ts if imported else None,
    )


class LegacyImport:
    """The writer's one-time import of the original's table, at the first tick of host's GPU 0."""

    def __init__(
        self, host: str, retention_s: float, wall: Callable[[], float] = time.time
    ) -> None:
        self.host = host
        self.retention_s = retention_s
        self.wall = wall
        self.done = False  # nothing (more) to import: no table, or imported

    def after_write(
        self, conn: sqlite3.Connection, ticks: Iterable[Tick], gpu_ids: dict[str, int]
    ) -> ImportResult | None:
        """Import the table, in its own transaction, once a tick of the host's GPU 0 is stored.

        A failure is logged and tried again after the next batch; it never fails the batch.
        """
        if self.done:
            return None
        target = next(
            (
                (gpu.uuid, tick.interval_s)
                for tick in ticks
                if tick.host == self.host
                for gpu in tick.gpus
                if gpu.index == LEGACY_GPU_INDEX
            ),
            None,
        )
        try:
            if not legacy_table_present(conn):
                self.done = True
                return None
            if target is None:
                return None
            uuid, interval_s = target
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = import_rows(
                    conn, gpu_ids[uuid], uuid, interval_s, self.wall() - self.retention_s
                )
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        except sqlite3.Error as error:
            log.error("cannot import the original pyCudaWatch's table %r: %s", LEGACY_TABLE, error)
            return None
        self.done = True
        _log_result(result, uuid, self.host)
        return result


def _iso(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).isoformat(timespec="seconds")


def _log_result(result: ImportResult, uuid: str, host: str) -> None:
    log.info(
        "imported %d readings of the original pyCudaWatch (table %r) as GPU 0 of %s (%s), "
        "from %s to %s UTC; left out %d older than the retention and %d unreadable; the table "
        "is kept: drop it with DROP TABLE %s once you no longer need it",
        result.imported,
        LEGACY_TABLE,
        host,
        uuid,
        _iso(result.first_ts),
        _iso(result.last_ts),
        result.too_old,
        result.unreadable,
        LEGACY_TABLE,
    )
