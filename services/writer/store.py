"""The writer's SQL: the one module that writes the SQLite file."""

from __future__ import annotations

import errno
import logging
import operator
import os
import sqlite3
import time
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import msgspec
from msgspec.structs import asdict

from common.dbfile import (
    FileIdentity,
    cache_size_pragma,
    database_bytes,
    file_identity,
    journal_paths,
)
from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from common.schema import (
    LIST_KNOWN_PROC_ID,
    SchemaTooNewError,
    migrate,
)
from services.alerts.engine import AlertState, Outcome
from services.writer import energy_buckets, rollups
from services.writer.alert_store import load_hosts, load_states, purge_alerts, store_outcome
from services.writer.health_states import store_health_states
from services.writer.legacy import LegacyImport
from services.writer.spans import (
    Identity,
    OpenSpans,
    Span,
    SpanKey,
    max_gap_s,
    merged_processes,
    place,
)

log = logging.getLogger(__name__)
_UUID = operator.attrgetter("uuid")

BUSY_TIMEOUT_MS = 5000
CACHE_BYTES = 4 << 20  # PCW_WRITER_CACHE_BYTES's default

_INSERT_SAMPLE = (
    f"INSERT OR IGNORE INTO samples (gpu_id, ts, error, {', '.join(METRIC_NAMES)}) "
    f"VALUES (?, ?, ?, {', '.join('?' for _ in METRIC_NAMES)})"
)
_NEWEST_SAMPLE_TS = "SELECT max(ts) FROM samples WHERE gpu_id = ?"
_UPSERT_GPU = """
INSERT INTO gpus (
    gpu_uuid, host, gpu_index, gpu_name, pci_bus_id, driver_version, first_ts, last_ts, interval_s,
    cuda_version, limits
)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (gpu_uuid) DO UPDATE SET
    host = excluded.host, gpu_index = excluded.gpu_index, gpu_name = excluded.gpu_name,
    pci_bus_id = excluded.pci_bus_id,
    driver_version = coalesce(excluded.driver_version, gpus.driver_version),
    first_ts = min(gpus.first_ts, excluded.first_ts), last_ts = max(gpus.last_ts, excluded.last_ts),
    interval_s = excluded.interval_s,
    cuda_version = coalesce(excluded.cuda_version, gpus.cuda_version),
    limits = coalesce(excluded.limits, gpus.limits)
RETURNING gpu_id
"""

_UPSERT_POSITION = """
INSERT INTO positions (sampler_id, host, seq, updated_ts) VALUES (?, ?, ?, ?)
ON CONFLICT (sampler_id) DO UPDATE SET
    seq = max(positions.seq, excluded.seq), updated_ts = excluded.updated_ts
"""


_FIND_IDENTITY = (
    "SELECT proc_id FROM proc_identities WHERE host = ? AND pid = ? AND visible = ? AND name IS ?"
    " AND cmdline IS ? AND user IS ? AND container_id IS ? AND container_name IS ?"
    " ORDER BY proc_id DESC LIMIT 1"
)
_INSERT_XID = (
    "INSERT OR IGNORE INTO xid_events (gpu_id, ts, code, gpu_instance_id, compute_instance_id)"
    " VALUES (?, ?, ?, ?, ?)"
)
_LIMITS_JSON = msgspec.json.Encoder()  # a GPU's limits as a JSON object in gpus.limits
_PURGE_HEALTH_STATES = (
    "DELETE FROM health_states WHERE gpu_id = ?1 AND ts < (SELECT ts FROM health_states"
    " WHERE gpu_id = ?1 AND ts < ?2 ORDER BY ts DESC LIMIT 1)"
)
_INSERT_IDENTITY = (
    "INSERT INTO proc_identities (host, pid, visible, name, cmdline, user, container_id,"
    " container_name, first_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING proc_id"
)
_SPAN_COLUMNS = "proc_id, kind, start_ts, end_ts, used_mem_bytes"
_INSERT_SPAN = (
    f"INSERT OR IGNORE INTO proc_spans (gpu_id, {_SPAN_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
)
_SPAN_WHERE = "WHERE gpu_id = ? AND start_ts = ? AND proc_id = ? AND kind = ?"
_SET_SPAN_END = f"UPDATE proc_spans SET end_ts = ? {_SPAN_WHERE}"
_SET_SPAN_START = f"UPDATE proc_spans SET start_ts = ? {_SPAN_WHERE}"
_DELETE_SPAN = f"DELETE FROM proc_spans {_SPAN_WHERE}"
# By the end index (the unary + keeps the primary key out): a replayed tick, most often a recent
# one, reads the spans that end after it, not the GPU's whole history of starts before it.
_NEAR_SPANS = (
    f"SELECT {_SPAN_COLUMNS} FROM proc_spans WHERE gpu_id = ? AND proc_id = ? AND kind = ?"
    " AND end_ts >= ? AND +start_ts <= ?"
)
_GPU_LATEST_SPAN_TS = "SELECT max(end_ts) FROM proc_spans WHERE gpu_id = ?"
_OPEN_SPANS = f"SELECT {_SPAN_COLUMNS} FROM proc_spans WHERE gpu_id = ? AND end_ts >= ?"


class _SpanWrites:
    """The span rows one batch inserts or extends, written once each at flush()."""

    def __init__(self) -> None:
        self.new: dict[tuple[int, int], tuple[int, Span]] = {}
        self.extended: dict[tuple[int, int], tuple[int, Span]] = {}

    def add(self, gpu_id: int, new: list[Span], extended: list[Span]) -> None:
        for span in new:
            self.new[(gpu_id, id(span))] = (gpu_id, span)
        for span in extended:
            if (gpu_id, id(span)) not in self.new:
                self.extended[(gpu_id, id(span))] = (gpu_id, span)

    def flush(self, conn: sqlite3.Connection) -> None:
        conn.executemany(
            _INSERT_SPAN,
            [
                (gpu_id, s.proc_id, s.kind, s.start_ts, s.end_ts, s.used_mem_bytes)
                for gpu_id, s in self.new.values()
            ],
        )
        conn.executemany(
            _SET_SPAN_END,
            [
                (s.end_ts, gpu_id, s.start_ts, s.proc_id, s.kind)
                for gpu_id, s in self.extended.values()
            ],
        )
        self.new.clear()
        self.extended.clear()


# How the hourly maintenance gives freed pages back to the file system (PCW_VACUUM, one of
# common.config.VACUUM_MODES).
# incremental: PRAGMA incremental_vacuum, which moves only as many pages as the purge freed;
# full: VACUUM, which rewrites the whole file (and needs free disk equal to it) every run.
_AUTO_VACUUM_NONE = 0


@dataclass(frozen=True)
class PurgeResult:
    """What one purge and its reclaim did; vacuum says how the space was reclaimed."""

    rows_deleted: int
    bytes_before: int
    bytes_after: int
    seconds: float
    vacuum: str


def file_bytes(db_path: Path) -> int:
    """Return the size of the database with its WAL, in bytes (0 when absent)."""
    return database_bytes(db_path) or 0


def connect(
    db_path: Path, busy_timeout_ms: int = BUSY_TIMEOUT_MS, cache_bytes: int = CACHE_BYTES
) -> sqlite3.Connection:
    """Open the file for writing in autocommit mode with the writer's pragmas, migrated.

    synchronous=NORMAL in WAL mode: a power cut can lose the last commits but never corrupts
    the file; FULL would fsync every batch for no gain a monitor needs. busy_timeout_ms is how
    long a write waits for another connection's lock before it fails with "database is locked".
    cache_bytes bounds the connection's page cache (PCW_WRITER_CACHE_BYTES).
    """
    db_path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        conn.execute(cache_size_pragma(cache_bytes))
        migrate(conn)
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


class UnusableDatabaseError(Exception):
    """The path cannot be this project's database; the text says why, for a user to act on."""


# SQLite's words for a condition that passes (another connection's lock, a full disk): the
# writer holds its readings and retries rather than refusing the path.
_PASSING = ("locked", "busy", "disk is full")


def unusable_reason(db_path: Path, error: BaseException | None = None) -> str | None:
    """Return why db_path cannot be opened as this project's database, or None if it may be.

    Looks at the path first (a folder, a device, a read-only file system), then at the error
    that opening it gave, if any.
    """
    if db_path.is_dir():
        return "it is a folder, not a file"
    if db_path.exists() and not db_path.is_file():
        return "it is not a regular file (a device, a pipe or a socket)"
    with suppress(OSError):
        if os.statvfs(_existing_ancestor(db_path)).f_flag & os.ST_RDONLY:
            return "its file system is mounted read-only"
    if error is None:
        return None
    text = str(error)
    if isinstance(error, sqlite3.Error) and any(word in text for word in _PASSING):
        return None
    if isinstance(error, SchemaTooNewError):
        return f"it was written by a newer pyCudaWatch ({text})"
    if isinstance(error, sqlite3.DatabaseError) and "not a database" in text:
        return f"it is not an SQLite database, or it is corrupt ({text})"
    if isinstance(error, OSError) and error.errno == errno.EROFS:
        return f"its file system is mounted read-only ({text})"
    return text


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


class Store:
    """Batches of ticks into `gpus` and `samples`, one transaction per batch."""

    def __init__(
        self,
        db_path: Path,
        busy_timeout_ms: int = BUSY_TIMEOUT_MS,
        legacy: LegacyImport | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self.db_path = db_path
        self.busy_timeout_ms = busy_timeout_ms
        self.cache_bytes = cache_bytes
        self.legacy = legacy  # the original pyCudaWatch's table, imported once
        self.notify = True  # store the alerts' notifications: there are targets to send them to
        self._conn: sqlite3.Connection | None = None
        # What the path, its -wal and -shm were when the connection was opened: a file deleted
        # or replaced under the writer is seen by a change (see _connection).
        self._identities: list[FileIdentity | None] = []
        # When the file was last found deleted or replaced (UTC epoch s), and what was found.
        self.reopened_ts: float | None = None
        self.reopened_reason: str | None = None
        # The process spans that the next ticks may extend, and identities already looked up;
        # both rebuilt from the file after a failed write or a purge.
        self._open_spans = OpenSpans()
        self._proc_ids: dict[tuple[str, Identity], int] = {}
        self._proc_ids_used: dict[tuple[str, Identity], int] = {}  # by the batch being stored

    def open(self) -> None:
        """Open, create or migrate the file now, as the writer starts.

        Raise UnusableDatabaseError when the path cannot be this project's database (a folder,
        a device, a corrupt or foreign file, a read-only file system, a newer schema). A
        passing condition (a lock, a full disk) is logged and left to the first write's retries.
        """
        reason = unusable_reason(self.db_path)
        if reason is not None:
            raise UnusableDatabaseError(reason)
        try:
            self._connection()
        except (sqlite3.Error, OSError, SchemaTooNewError) as error:
            reason = unusable_reason(self.db_path, error)
            if reason is not None:
                raise UnusableDatabaseError(reason) from None
            log.warning(
                "cannot open %s yet, retrying with the first write: %s", self.db_path, error
            )

    def _connection(self) -> sqlite3.Connection:
        """Return the connection, opening the path anew if the file was deleted or replaced.

        One stat per call (per batch): the cost of never writing to a deleted file for hours.
        """
        if self._identities and file_identity(self.db_path) != self._identities[0]:
            self._reopen()
        if self._conn is None:
            self._conn = connect(self.db_path, self.busy_timeout_ms, self.cache_bytes)
            paths = (self.db_path, *journal_paths(self.db_path))
            self._identities = [file_identity(path) for path in paths]
        return self._conn

    def _reopen(self) -> None:
        """Leave a file deleted or replaced under the writer; the caller opens the path anew.

        The -wal and -shm beside it are still the old file's (its connections hold them; SQLite
        itself never deletes them once the file has moved): they are removed before the new
        file is opened, or SQLite would take the old file's log for the new file's.
        """
        found = "deleted" if not self.db_path.exists() else "replaced by another file"
        self.close()
        for path, identity in zip(journal_paths(self.db_path), self._identities[1:], strict=True):
            if identity is not None and file_identity(path) == identity:
                with suppress(FileNotFoundError):
                    path.unlink()
        self._identities = []
        self._forget_processes()
        self.reopened_ts = time.time()
        self.reopened_reason = (
            f"the database file {self.db_path} was {found} while the writer had it open; "
            "the writer opened the path anew (readings stored before are not in it)"
        )
        log.warning("%s", self.reopened_reason)

    def close(self) -> None:
        """Close the connection; the next write opens a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def positions(self) -> dict[str, tuple[str, int]]:
        """Return {sampler_id: (host, seq)}: how far each sampler run is stored."""
        rows = self._connection().execute("SELECT sampler_id, host, seq FROM positions")
        return {sampler_id: (host, seq) for sampler_id, host, seq in rows}

    def write(
        self,
        ticks: list[Tick],
        positions: dict[str, tuple[str, int]] | None = None,
        alerts: Outcome | None = None,
    ) -> int:
        """Store the ticks, runs' positions and what they changed in the alerts in one
        transaction; return the readings written.

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
            newest_before = {
                gpu_id: conn.execute(_NEWEST_SAMPLE_TS, (gpu_id,)).fetchone()[0]
                for gpu_id in set(gpu_ids.values())
            }
            inserted = conn.executemany(_INSERT_SAMPLE, rows).rowcount
            # every row new (none ignored as a duplicate): the rollups may sum them as they are
            new_rows = rollups.NewRows(rows, newest_before) if inserted == len(rows) else None
            conn.executemany(
                _INSERT_XID,
                [
                    (gpu_ids[gpu.uuid], xid.ts, xid.code, xid.gpu_instance_id,
                     xid.compute_instance_id)
                    for tick in ticks
                    for gpu in tick.gpus
                    for xid in gpu.xid_events
                ],
            )  # fmt: skip
            store_health_states(conn, ticks, gpu_ids)
            rollups.refresh(conn, ticks, gpu_ids, new_rows)
            energy_buckets.refresh(conn, ticks, gpu_ids)
            self._store_processes(conn, ticks, gpu_ids)
            if alerts:
                store_outcome(conn, alerts, self.notify)
            if positions:
                updated_ts = max(tick.ts for tick in ticks)
                conn.executemany(
                    _UPSERT_POSITION,
                    [(sid, host, seq, updated_ts) for sid, (host, seq) in positions.items()],
                )
            conn.execute("COMMIT")
        except BaseException:
            self._forget_processes()
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        if self.legacy is not None:
            self.legacy.after_write(conn, ticks, gpu_ids)
        return len(rows)

    def write_alerts(self, alerts: Outcome) -> None:
        """Store alerts judged by time (hosts, the writer) in their own transaction."""
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            store_outcome(conn, alerts, self.notify)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def alert_state(self) -> tuple[list[AlertState], dict[str, float]]:
        """Return the stored pending and firing alerts, and every host with its interval."""
        conn = self._connection()
        return load_states(conn), load_hosts(conn)

    def _forget_processes(self) -> None:
        """Drop the in-memory spans and identities; the next write reads them from the file."""
        self._open_spans = OpenSpans()
        self._proc_ids, self._proc_ids_used = {}, {}

    def _store_processes(
        self, conn: sqlite3.Connection, ticks: list[Tick], gpu_ids: dict[str, int]
    ) -> None:
        """Extend or start the process spans of every GPU of the ticks whose list is known."""
        writes = _SpanWrites()
        self._proc_ids_used = {}
        for tick in ticks:
            for gpu in tick.gpus:
                if gpu.processes is None:
                    continue  # unknown: nothing added, nothing ended (see spans.py)
                gpu_id = gpu_ids[gpu.uuid]
                entries: dict[SpanKey, int | None] = {}
                for (identity, kind), used in merged_processes(gpu.processes).items():
                    proc_id = self._proc_id(conn, tick.host, identity, tick.ts)
                    entries[(proc_id, kind)] = used
                if not self._open_spans.knows(gpu_id):
                    self._load_open_spans(conn, gpu_id)
                if self._open_spans.is_newest(gpu_id, tick.ts):
                    changed = self._open_spans.advance(gpu_id, tick.ts, tick.interval_s, entries)
                    writes.add(gpu_id, changed.new, changed.extended)
                    continue
                writes.flush(conn)  # the file must hold every span before an older tick is placed
                entries[(LIST_KNOWN_PROC_ID, 0)] = None
                for key, used in entries.items():
                    self._place_older(conn, gpu_id, key, used, tick.ts, tick.interval_s)
                self._load_open_spans(conn, gpu_id)
        writes.flush(conn)
        # Of the hosts whose lists this batch holds, keep only the identities it used (the
        # processes running now): a cache of every process ever seen would grow for as long as
        # jobs come and go. Another host's (a slower one, in a hub) stay until its next batch.
        listed = {
            tick.host for tick in ticks if any(gpu.processes is not None for gpu in tick.gpus)
        }
        kept = {key: pid for key, pid in self._proc_ids.items() if key[0] not in listed}
        self._proc_ids, self._proc_ids_used = kept | self._proc_ids_used, {}

    def _proc_id(self, conn: sqlite3.Connection, host: str, identity: Identity, ts: float) -> int:
        """Return the proc_id of a process identity of a host, recording it when new."""
        key = (host, identity)
        proc_id = self._proc_ids.get(key)
        if proc_id is None:
            row = conn.execute(_FIND_IDENTITY, (host, *identity)).fetchone()
            if row is None:
                row = conn.execute(_INSERT_IDENTITY, (host, *identity, ts)).fetchone()
            proc_id = row[0]
            self._proc_ids[key] = proc_id
        self._proc_ids_used[key] = proc_id
        return proc_id

    def _load_open_spans(self, conn: sqlite3.Connection, gpu_id: int) -> None:
        """Read a GPU's newest known tick and the spans that end on it from the file."""
        (latest_ts,) = conn.execute(_GPU_LATEST_SPAN_TS, (gpu_id,)).fetchone()
        if latest_ts is None:
            self._open_spans.load(gpu_id, float("-inf"), [])
            return
        spans = [Span(*row) for row in conn.execute(_OPEN_SPANS, (gpu_id, latest_ts))]
        self._open_spans.load(gpu_id, latest_ts, spans)

    @staticmethod
    def _place_older(
        conn: sqlite3.Connection,
        gpu_id: int,
        key: SpanKey,
        used_mem_bytes: int | None,
        ts: float,
        interval_s: float,
    ) -> None:
        """Place one process of a tick older than the GPU's newest among its spans in the file."""
        gap_s = max_gap_s(interval_s)
        around = [
            Span(*row) for row in conn.execute(_NEAR_SPANS, (gpu_id, *key, ts - gap_s, ts + gap_s))
        ]
        placement = place(ts, used_mem_bytes, around, interval_s)
        before, after = placement.before, placement.after
        if placement.action == "new":
            conn.execute(_INSERT_SPAN, (gpu_id, *key, ts, ts, used_mem_bytes))
        elif placement.action == "extend" and before is not None:
            conn.execute(_SET_SPAN_END, (ts, gpu_id, before.start_ts, *key))
        elif placement.action == "prepend" and after is not None:
            conn.execute(_SET_SPAN_START, (ts, gpu_id, after.start_ts, *key))
        elif placement.action == "join" and before is not None and after is not None:
            conn.execute(_DELETE_SPAN, (gpu_id, after.start_ts, *key))
            conn.execute(_SET_SPAN_END, (after.end_ts, gpu_id, before.start_ts, *key))

    @staticmethod
    def _upsert_gpus(conn: sqlite3.Connection, ticks: list[Tick]) -> dict[str, int]:
        """Record each GPU of the batch once, with its newest identity; return uuid -> gpu_id.

        Per tick, not per reading: ticks of the same GPUs (a host's, tick after tick) are
        grouped first; a GPU's newest reading is that of its newest tick, the last sent of equals.
        """
        # per list of GPUs: the earliest time, and the newest tick as (ts, its order, tick)
        groups: dict[tuple[str, ...], tuple[float, tuple[float, int, Tick]]] = {}
        for order, tick in enumerate(ticks):
            uuids = tuple(map(_UUID, tick.gpus))
            held = groups.get(uuids)
            if held is None:
                groups[uuids] = (tick.ts, (tick.ts, order, tick))
            else:
                groups[uuids] = (min(held[0], tick.ts), max(held[1], (tick.ts, order, tick)))
        first_ts: dict[str, float] = {}
        newest: dict[str, tuple[float, int, Tick, GpuReading]] = {}
        for uuids, (earliest_ts, (ts, order, tick)) in groups.items():
            for gpu_place, uuid in enumerate(uuids):
                first_ts[uuid] = min(first_ts.get(uuid, earliest_ts), earliest_ts)
                current = newest.get(uuid)
                if current is None or (ts, order) >= current[:2]:
                    newest[uuid] = (ts, order, tick, tick.gpus[gpu_place])
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
                    tick.cuda_version,
                    None if gpu.limits is None else _LIMITS_JSON.encode(asdict(gpu.limits)),
                ),
            ).fetchone()[0]
            for uuid, (_ts, _order, tick, gpu) in newest.items()
        }

    def purge(self, before_ts: float, vacuum: str = "incremental") -> PurgeResult:
        """Delete readings older than before_ts, then reclaim the freed pages as `vacuum` says.

        Each GPU's readings, rollups and spans go in one transaction, so that a reader never
        sees the rollups disagree with the readings.
        """
        started = time.monotonic()
        bytes_before = file_bytes(self.db_path)
        conn = self._connection()
        deleted = 0
        for gpu_id, interval_s in conn.execute("SELECT gpu_id, interval_s FROM gpus").fetchall():
            conn.execute("BEGIN IMMEDIATE")
            try:
                gone = conn.execute(  # per GPU, so that the (gpu_id, ts) key bounds the scan
                    "DELETE FROM samples WHERE gpu_id = ? AND ts < ?", (gpu_id, before_ts)
                ).rowcount
                if gone:  # else its rollups hold nothing older, and the edge bucket is right
                    rollups.purge(conn, gpu_id, interval_s, before_ts)
                    energy_buckets.purge(conn, gpu_id, interval_s, before_ts)
                deleted += gone
                # A span goes with its last tick; one that ends inside the retention is kept whole.
                conn.execute(
                    "DELETE FROM proc_spans WHERE gpu_id = ? AND end_ts < ?", (gpu_id, before_ts)
                )
                conn.execute(
                    "DELETE FROM xid_events WHERE gpu_id = ? AND ts < ?", (gpu_id, before_ts)
                )
                # the newest health row before the cutoff is the GPU's state at it: kept
                conn.execute(_PURGE_HEALTH_STATES, (gpu_id, before_ts))
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
        conn.execute(
            "DELETE FROM proc_identities WHERE proc_id NOT IN (SELECT proc_id FROM proc_spans)"
        )
        self._forget_processes()
        conn.execute(  # a GPU that goes takes its state at the cutoff with it
            "DELETE FROM health_states WHERE gpu_id IN (SELECT gpu_id FROM gpus WHERE last_ts < ?)",
            (before_ts,),
        )
        conn.execute("DELETE FROM gpus WHERE last_ts < ?", (before_ts,))
        conn.execute("DELETE FROM positions WHERE updated_ts < ?", (before_ts,))
        purge_alerts(conn, before_ts)
        done = self._reclaim(conn, vacuum)
        return PurgeResult(
            deleted, bytes_before, file_bytes(self.db_path), time.monotonic() - started, done
        )

    def _reclaim(self, conn: sqlite3.Connection, vacuum: str) -> str:
        """Give the free pages back to the file system; return what was done.

        A file made before its auto_vacuum could be set (by another tool, or the original
        pyCudaWatch's table) has auto_vacuum NONE: it is converted once, by one full VACUUM.
        """
        if vacuum == "incremental" and _auto_vacuum(conn) != _AUTO_VACUUM_NONE:
            # Each step of it frees one page: executescript steps it to the end, execute would not.
            conn.executescript("PRAGMA incremental_vacuum;")
            done = "incremental vacuum"
        else:
            if vacuum == "incremental":
                log.info(
                    "converting %s to incremental auto-vacuum: a one-time full VACUUM, which "
                    "needs free disk equal to the file",
                    self.db_path,
                )
            conn.execute("PRAGMA auto_vacuum = INCREMENTAL")  # takes effect with the VACUUM
            conn.execute("VACUUM")
            done = "full vacuum" if vacuum == "full" else "converted by a full vacuum"
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        return done


def _auto_vacuum(conn: sqlite3.Connection) -> int:
    """Return the file's auto_vacuum mode: 0 NONE, 1 FULL, 2 INCREMENTAL."""
    return int(conn.execute("PRAGMA auto_vacuum").fetchone()[0])
