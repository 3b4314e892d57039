"""Every SQL read of the web process: the SQLite file opened read-only, queried off the loop.

Policy, all in this class: a connection per reader thread, opened `mode=ro` (the web process
never writes the file), and each call runs in one read transaction, so it sees one snapshot, under
a time limit enforced by SQLite's progress handler. Reads run in two lanes of their own threads:
the live view's (GPUs, hosts, processes, health: key look-ups, milliseconds) and range reads
(history, usage, energy: up to the time limit), so the live view never waits behind a long
range. Each lane holds at most its threads plus its queue; past that a call is refused at once
with StoreBusyError, which the API answers 503 with Retry-After. The file may not exist yet, or
not hold its tables yet, when the web process starts (the writer creates it): calls then return
their empty answer, and the file is opened on the first call after it appears.
A file deleted or replaced while the process runs is noticed by its inode at the next call, and
the path is opened anew.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from common.dbfile import FileIdentity, database_bytes, file_identity
from common.metrics import METRIC_NAMES
from common.schema import (
    KIND_CODES,
    LIST_KNOWN_PROC_ID,
    SCHEMA_VERSION,
    rollup_levels_for,
    rollup_table,
    schema_version,
)
from services.web.energy import GpuEnergy, integrate
from services.web.idle import Coverage, Reading, run_since, run_since_after
from services.web.usage import UsageSpan

logger = logging.getLogger(__name__)

QUERY_TIME_LIMIT_S = 10.0
PROGRESS_STEPS = 1000  # SQLite VM instructions between two looks at the clock
BUSY_TIMEOUT_S = 2.0
LIVE_READERS = 2
LIVE_READ_QUEUE = 64
RANGE_READERS = 2
RANGE_READ_QUEUE = 8
DURATION_WEIGHT = 0.2  # of the newest call in a lane's moving mean duration

T = TypeVar("T")

_GPU_COLUMNS = (
    "gpu_id, gpu_uuid, host, gpu_index, gpu_name, pci_bus_id, driver_version, first_ts, last_ts,"
    " interval_s"
)
GPUS_SQL = f"SELECT {_GPU_COLUMNS} FROM gpus"
# One key look-up from the end of the GPU's key range, never a scan.
LATEST_SQL = (
    f"SELECT ts, error, {', '.join(METRIC_NAMES)} FROM samples "
    "WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"
)
# When a GPU's current run of errored readings began: the first reading after its last error-free
# one (its first reading, if it never had one). The subquery walks the GPU's key range back from
# the end and stops at the first error-free row, so it reads the run, never the whole history;
# the outer MIN is one key look-up. Only asked of GPUs whose latest reading is in error.
ERROR_SINCE_SQL = (
    "SELECT MIN(ts) FROM samples WHERE gpu_id = ?1 AND ts > COALESCE("
    "(SELECT ts FROM samples WHERE gpu_id = ?1 AND error IS NULL ORDER BY ts DESC LIMIT 1), -1)"
)


def history_sql(
    metrics: Sequence[str], level_s: int | None = None, step_s: int | None = None
) -> str:
    """Return the bucketed range query of one GPU: one key range scan over (gpu_id, ts).

    From the raw samples (level_s None) or from the rollup table of level_s, whose buckets each
    fall inside one of ours (see rollup_level). Parameters: step_s, last bucket number, gpu_id,
    low_s, high_s. Columns: bucket number (floor(ts / step_s), capped at the last bucket because a
    ts just below high_s can round up to it), reading count, then the mean and max of each
    metric. Both skip NULL, so a metric that is NULL in every row of a bucket stays NULL, and
    errored rows (NULL metrics) only add to the count. A rollup's mean is sum / count over its
    rows, exactly the raw mean; dividing by a zero count gives NULL in SQLite.
    """
    unknown = set(metrics) - set(METRIC_NAMES)
    if unknown:
        raise ValueError(f"unknown metrics {sorted(unknown)}")
    if level_s is None:
        table, count = "samples", "COUNT(*)"
        aggregates = ", ".join(f"AVG({name}), MAX({name})" for name in metrics)
    elif level_s == step_s:  # one rollup row is one bucket: nothing to group
        columns = ", ".join(f"CAST({name}_sum AS REAL) / {name}_n, {name}_max" for name in metrics)
        return (
            f"SELECT MIN(CAST(ts / ?1 AS INTEGER), ?2) AS bucket, n, {columns} "
            f"FROM {rollup_table(level_s)} WHERE gpu_id = ?3 AND ts >= ?4 AND ts < ?5 ORDER BY ts"
        )
    else:
        table, count = rollup_table(level_s), "SUM(n)"
        aggregates = ", ".join(
            f"CAST(SUM({name}_sum) AS REAL) / SUM({name}_n), MAX({name}_max)" for name in metrics
        )
    return (
        f"SELECT MIN(CAST(ts / ?1 AS INTEGER), ?2) AS bucket, {count}, {aggregates} FROM {table} "
        "WHERE gpu_id = ?3 AND ts >= ?4 AND ts < ?5 GROUP BY bucket ORDER BY bucket"
    )


def history_json_sql(metrics: Sequence[str], level_s: int | None, step_s: int) -> str:
    """Return the query that answers one GPU's buckets as the API's JSON array, built by SQLite.

    Every bucket first..last is present, in order (a recursive count of bucket numbers drives a
    left join), so a bucket with no reading is {"ts", "count": 0, "mean": null, "max": null}.
    Where a rollup row is a bucket (level_s == step_s), each bucket is one key look-up; else the
    buckets come from history_sql. Building the JSON in SQLite's C code takes a few ms where
    Python dicts took tens. Parameters: step_s, last bucket, gpu_id, low_s, high_s, first bucket.
    """
    if level_s is not None and level_s == step_s:
        source = f"LEFT JOIN {rollup_table(level_s)} AS b ON b.gpu_id = ?3 AND b.ts = slots.k * ?1"
        mean_of = {name: f"CAST(b.{name}_sum AS REAL) / b.{name}_n" for name in metrics}
        max_of = {name: f"b.{name}_max" for name in metrics}
        with_clause = ""
    else:
        columns = ", ".join(f"c{i}" for i in range(2 * len(metrics)))
        source = "LEFT JOIN b ON b.bucket = slots.k"
        mean_of = {name: f"b.c{2 * i}" for i, name in enumerate(metrics)}
        max_of = {name: f"b.c{2 * i + 1}" for i, name in enumerate(metrics)}
        with_clause = f", b(bucket, n, {columns}) AS ({history_sql(metrics, level_s, step_s)})"
    mean = ", ".join(f"'{name}', {mean_of[name]}" for name in metrics)
    top = ", ".join(f"'{name}', {max_of[name]}" for name in metrics)
    return (
        "WITH RECURSIVE slots(k) AS (SELECT ?6 UNION ALL SELECT k + 1 FROM slots WHERE k < ?2)"
        f"{with_clause} "
        "SELECT json_group_array(json_object('ts', slots.k * ?1, 'count', coalesce(b.n, 0), "
        f"'mean', CASE WHEN b.n IS NULL THEN NULL ELSE json_object({mean}) END, "
        f"'max', CASE WHEN b.n IS NULL THEN NULL ELSE json_object({top}) END)) "
        f"FROM slots {source} WHERE ?4 < ?5"
    )


def rollup_level(step_s: int, interval_s: float | None) -> int | None:
    """Return the coarsest rollup level that serves buckets of step_s for this GPU, or None.

    Its buckets must tile ours (step_s a multiple of it), and the writer must keep it for the
    GPU's sampling interval.
    """
    if interval_s is None:
        return None
    fitting = [
        level_s
        for level_s in rollup_levels_for(interval_s)
        if level_s <= step_s and step_s % level_s == 0
    ]
    return max(fitting, default=None)


class StoreError(RuntimeError):
    """The database cannot be read right now; the text says why."""


class QueryTimeoutError(StoreError):
    """A read ran past its time limit and was interrupted."""


class StoreBusyError(StoreError):
    """A lane has as many reads running and waiting as it may hold; ask again in retry_after_s."""

    def __init__(self, lane: str, retry_after_s: int) -> None:
        super().__init__(f"too many {lane} reads are running or waiting; ask again later")
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LaneLimits:
    """A lane's reader threads and how many calls may wait for one of them."""

    readers: int
    queue: int


class _Lane:
    """Reader threads of one kind of call, holding at most readers + queue calls at a time."""

    def __init__(self, name: str, limits: LaneLimits, time_limit_s: float) -> None:
        self.name = name
        self.limits = limits
        self.executor = ThreadPoolExecutor(
            max_workers=limits.readers, thread_name_prefix=f"pcw-read-{name}"
        )
        self.held = 0  # calls running or waiting; changed on the event loop only
        self._time_limit_s = time_limit_s
        self._mean_s = 0.0

    async def run(self, call: Callable[[], T]) -> T:
        """Run call() in one of the lane's threads; raise StoreBusyError when the lane is full."""
        if self.held >= self.limits.readers + self.limits.queue:
            raise StoreBusyError(self.name, self._retry_after_s())
        self.held += 1
        started_s = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.executor, call)
        finally:
            self.held -= 1
            took_s = time.monotonic() - started_s
            self._mean_s += DURATION_WEIGHT * (took_s - self._mean_s)

    def _retry_after_s(self) -> int:
        """Return about when the calls held now will be done: whole seconds, 1 at least."""
        wait_s = self._mean_s * self.held / self.limits.readers
        return max(1, math.ceil(min(wait_s, self._time_limit_s)))


@dataclass(frozen=True)
class GpuRow:
    """One GPU as the writer recorded it; times in UTC epoch seconds."""

    gpu_id: int
    gpu_uuid: str
    host: str
    gpu_index: int
    gpu_name: str
    pci_bus_id: str | None
    driver_version: str | None
    first_ts: float
    last_ts: float
    interval_s: float | None = None


@dataclass(frozen=True)
class GpuLatest:
    """A GPU and its newest stored reading ({"ts", "error", <metric>...}), None if none.

    error_since_ts: when that reading is in error, the time (UTC epoch seconds) of the first
    reading of the unbroken run of errored readings it ends; otherwise None.
    """

    gpu: GpuRow
    latest: dict[str, Any] | None
    error_since_ts: float | None = None


@dataclass(frozen=True)
class GpuBuckets:
    """A GPU and its buckets as the API's JSON array (history_json_sql)."""

    gpu: GpuRow
    buckets_json: str


@dataclass(frozen=True)
class HistoryRows:
    """The answer of one history read: the series found, and requested UUIDs not in the file."""

    series: list[GpuBuckets]
    missing_uuids: list[str] = field(default_factory=list)
    missing_hosts: list[str] = field(default_factory=list)  # asked for, with no GPU in the file


class _ThreadState(threading.local):
    """One worker thread's connection and the deadline (time.monotonic seconds) of its call."""

    def __init__(self) -> None:
        self.conn: sqlite3.Connection | None = None
        self.identity: FileIdentity | None = None  # the file conn reads (see _connection)
        self.ready = False
        self.deadline = math.inf
        self.interrupted = False


class Store:
    """Read the SQLite file at db_path, read-only, through two lanes of reader threads."""

    def __init__(
        self,
        db_path: Path,
        *,
        time_limit_s: float = QUERY_TIME_LIMIT_S,
        live: LaneLimits = LaneLimits(LIVE_READERS, LIVE_READ_QUEUE),
        ranges: LaneLimits = LaneLimits(RANGE_READERS, RANGE_READ_QUEUE),
    ) -> None:
        self._db_path = db_path
        self._uri = db_path.resolve().as_uri() + "?mode=ro"
        self._time_limit_s = time_limit_s
        self._live = _Lane("live", live, time_limit_s)
        self._ranges = _Lane("range", ranges, time_limit_s)
        self._state = _ThreadState()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closing = False
        self._idle_runs = IdleRuns()

    @property
    def db_path(self) -> Path:
        """Return the path of the SQLite file."""
        return self._db_path

    async def gpus_with_latest(self) -> list[GpuLatest]:
        """Return every GPU in the file with its newest reading and, if in error, since when.

        [] before the file exists.
        """
        return await self.call(_read_gpus_with_latest, [])

    async def history(
        self,
        gpu_uuids: Sequence[str],
        first_bucket: int,
        bucket_count: int,
        step_s: int,
        metrics: Sequence[str],
        hosts: Sequence[str] = (),
    ) -> HistoryRows:
        """Return the rows of the buckets first_bucket.. (each step_s seconds) of the named GPUs.

        Whole buckets are read, so a bucket's value never depends on where the range cut it.
        With no UUIDs, every GPU whose first..last reading overlaps the buckets is chosen.
        With hosts, only GPUs of those hosts are chosen.
        """

        def job(conn: sqlite3.Connection) -> HistoryRows:
            return _read_history(
                conn, gpu_uuids, first_bucket, bucket_count, step_s, metrics, hosts
            )

        return await self.call(job, HistoryRows([], list(gpu_uuids), list(hosts)), long=True)

    async def idle(self, util_pct: float) -> list[GpuIdle]:
        """Return each GPU's newest process list and idle-and-allocated run start ([] before
        the file exists); each GPU's run goes on from where the previous call left it."""
        return await self.call(idle_job(util_pct, self._idle_runs), [])

    def file_bytes(self) -> int | None:
        """Return the size in bytes of the file and its -wal, or None when there is no file."""
        return database_bytes(self._db_path)

    def held(self, *, long: bool = False) -> int:
        """Return how many calls the lane holds (running or waiting): range reads when long."""
        return (self._ranges if long else self._live).held

    async def call(
        self, job: Callable[[sqlite3.Connection], T], empty: T, *, long: bool = False
    ) -> T:
        """Run job(conn) in a reader thread in one read transaction, under the time limit.

        long: a read over a range of time (history, usage, energy), run in the range lane;
        otherwise the live view's lane. Return `empty` when the file or its tables do not exist
        yet. Raise StoreBusyError when the lane is full, QueryTimeoutError when the job runs
        past the limit, StoreError when SQLite fails.
        """
        lane = self._ranges if long else self._live
        return await lane.run(functools.partial(self._run, job, empty))

    async def close(self) -> None:
        """Interrupt running reads, stop the readers and close their connections."""
        self._closing = True
        for lane in (self._live, self._ranges):
            await asyncio.to_thread(lane.executor.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            conn.close()

    def _run(self, job: Callable[[sqlite3.Connection], T], empty: T) -> T:
        state = self._state
        conn = self._connection(state)
        if conn is None:
            return empty
        state.interrupted = False
        state.deadline = time.monotonic() + self._time_limit_s
        try:
            conn.execute("BEGIN")
            return job(conn)
        except sqlite3.Error as error:
            if state.interrupted:
                raise QueryTimeoutError(
                    f"the query took longer than {self._time_limit_s:g} s and was stopped"
                ) from None
            raise StoreError(f"cannot read {self._db_path}: {error}") from None
        finally:
            state.deadline = math.inf  # so that the ROLLBACK itself is never interrupted
            if conn.in_transaction:
                conn.execute("ROLLBACK")

    def _connection(self, state: _ThreadState) -> sqlite3.Connection | None:
        """Return this thread's connection, or None while the file or its schema is missing.

        A file deleted or replaced since the connection opened it (another inode at the path,
        or none) is left: the connection would read a file that no longer changes.
        """
        try:
            if state.conn is not None and file_identity(self._db_path) != state.identity:
                self._leave(state)
            if state.conn is None:
                state.identity = file_identity(self._db_path)  # before: a change is seen later
                if state.identity is None:
                    return None
                state.conn = self._open(state)
            if not state.ready:
                version = schema_version(state.conn)
                if version == 0:
                    return None  # the writer has created the file but not its tables yet
                if version > SCHEMA_VERSION:
                    logger.warning(
                        "%s has schema version %d, newer than %d; reading it anyway",
                        self._db_path,
                        version,
                        SCHEMA_VERSION,
                    )
                state.ready = True
        except sqlite3.Error as error:
            raise StoreError(f"cannot open {self._db_path}: {error}") from None
        return state.conn

    def _leave(self, state: _ThreadState) -> None:
        """Close this thread's connection to a file deleted or replaced under it."""
        conn, state.conn, state.ready = state.conn, None, False
        if conn is None:
            return
        with self._lock:
            if conn in self._connections:
                self._connections.remove(conn)
        conn.close()
        logger.warning(
            "%s was deleted or replaced; reading the file at that path anew", self._db_path
        )

    def _open(self, state: _ThreadState) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self._uri,
            uri=True,
            timeout=BUSY_TIMEOUT_S,
            isolation_level=None,  # autocommit: transactions are explicit, reads never linger
            check_same_thread=False,  # used by one worker; closed by close() after they stop
        )

        def over_time() -> int:
            if self._closing or time.monotonic() > state.deadline:
                state.interrupted = True
                return 1
            return 0

        conn.set_progress_handler(over_time, PROGRESS_STEPS)
        with self._lock:
            self._connections.append(conn)
        logger.info("opened %s read-only", self._db_path)
        return conn


def _read_gpus(conn: sqlite3.Connection) -> list[GpuRow]:
    return [GpuRow(*row) for row in conn.execute(GPUS_SQL).fetchall()]


def _read_gpus_with_latest(conn: sqlite3.Connection) -> list[GpuLatest]:
    columns = ("ts", "error", *METRIC_NAMES)
    answer = []
    for gpu in _read_gpus(conn):
        row = conn.execute(LATEST_SQL, (gpu.gpu_id,)).fetchone()
        if row is None:
            answer.append(GpuLatest(gpu, None))
            continue
        latest = dict(zip(columns, row, strict=True))
        since_ts = None
        if latest["error"] is not None:
            since_ts = conn.execute(ERROR_SINCE_SQL, (gpu.gpu_id,)).fetchone()[0]
        answer.append(GpuLatest(gpu, latest, since_ts))
    return answer


def _read_history(
    conn: sqlite3.Connection,
    gpu_uuids: Sequence[str],
    first_bucket: int,
    bucket_count: int,
    step_s: int,
    metrics: Sequence[str],
    hosts: Sequence[str] = (),
) -> HistoryRows:
    last_bucket = first_bucket + bucket_count - 1
    low_s, high_s = first_bucket * step_s, (last_bucket + 1) * step_s
    gpus = _read_gpus(conn)
    if gpu_uuids:
        by_uuid = {gpu.gpu_uuid: gpu for gpu in gpus}
        chosen = [by_uuid[uuid] for uuid in gpu_uuids if uuid in by_uuid]
        missing = [uuid for uuid in gpu_uuids if uuid not in by_uuid]
    else:
        chosen = [gpu for gpu in gpus if gpu.last_ts >= low_s and gpu.first_ts < high_s]
        missing = []
    # host= narrows the choice (both given: the named GPUs of those hosts)
    stored_hosts = {gpu.host for gpu in gpus}
    missing_hosts = [host for host in hosts if host not in stored_hosts]
    if hosts:
        chosen = [gpu for gpu in chosen if gpu.host in hosts]
    series = []
    for gpu in chosen:
        sql = history_json_sql(metrics, rollup_level(step_s, gpu.interval_s), step_s)
        params = (step_s, last_bucket, gpu.gpu_id, low_s, high_s, first_bucket)
        series.append(GpuBuckets(gpu, conn.execute(sql, params).fetchone()[0]))
    return HistoryRows(series, missing, missing_hosts)


# -- processes, usage, energy and idle GPUs (issue 8) ---------------------------------------------
# Module-level jobs for Store.call(): each returns a callable that reads in one transaction.

DEFAULT_INTERVAL_S = 60.0
CHAIN_GAP_INTERVALS = 1.5  # spans this close (in intervals) are one unbroken presence

GPU_BY_UUID_SQL = f"SELECT {_GPU_COLUMNS} FROM gpus WHERE gpu_uuid = ?"
TICK_AT_SQL = "SELECT ts FROM samples WHERE gpu_id = ? AND ts <= ? ORDER BY ts DESC LIMIT 1"
LATEST_TICK_SQL = "SELECT ts FROM samples WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"
LIST_KNOWN_SQL = (
    "SELECT 1 FROM proc_spans WHERE gpu_id = ?1 AND end_ts >= ?2 AND start_ts <= ?2"
    f" AND proc_id = {LIST_KNOWN_PROC_ID} LIMIT 1"
)
# By the end index (the unary + keeps the primary key out): at the newest tick, the dashboard's
# every poll, only the spans still open are read, not the GPU's whole history of starts.
PROCESSES_AT_SQL = (
    "SELECT s.proc_id, s.kind, s.used_mem_bytes, i.pid, i.visible, i.name, i.cmdline, i.user,"
    " i.container_id, i.container_name FROM proc_spans AS s"
    " JOIN proc_identities AS i ON i.proc_id = s.proc_id"
    " WHERE s.gpu_id = ?1 AND s.end_ts >= ?2 AND +s.start_ts <= ?2"
    f" AND s.proc_id != {LIST_KNOWN_PROC_ID} ORDER BY i.pid, s.kind"
)
# Walks the GPU's spans back from ts (key order); the caller stops at the first break.
CHAIN_SQL = (
    "SELECT start_ts, end_ts FROM proc_spans WHERE gpu_id = ?1 AND start_ts <= ?3"
    " AND proc_id = ?2 ORDER BY start_ts DESC"
)
USAGE_KEY_SQL = {
    "user": "i.user",
    "process": "i.name",
    "container": "coalesce(i.container_name, i.container_id)",
}
_ENERGY_COLUMNS = "SELECT ts, energy_j, power_w, error FROM samples"
ENERGY_READINGS_SQL = _ENERGY_COLUMNS + " WHERE gpu_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
# The readings before the range whose pairs with the range's readings are the range's: the last
# one, and the last error-free one (the counter counts across error ticks), in ts order.
ENERGY_BEFORE_SQL = (
    f"SELECT * FROM ({_ENERGY_COLUMNS} WHERE gpu_id = ?1 AND ts < ?2 ORDER BY ts DESC LIMIT 1)"
    f" UNION SELECT * FROM ({_ENERGY_COLUMNS} WHERE gpu_id = ?1 AND ts < ?2 AND error IS NULL"
    " ORDER BY ts DESC LIMIT 1) ORDER BY ts"
)
# The columns of an idle Reading (services/web/idle.py), and of span rows for _coverages().
_READINGS_SQL = "SELECT ts, util_gpu_pct, mem_used_bytes, mem_total_bytes, error FROM samples"
_SPANS_SQL = "SELECT proc_id, start_ts, end_ts, used_mem_bytes FROM proc_spans"
IDLE_FIRST_SQL = "SELECT ts FROM samples WHERE gpu_id = ? ORDER BY ts LIMIT 1"
IDLE_LATEST_SQL = _READINGS_SQL + " WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"
# The first reading after the newest one that is not under the utilization threshold.
LOW_UTIL_SINCE_SQL = (
    "SELECT MIN(ts) FROM samples WHERE gpu_id = ?1 AND ts > COALESCE((SELECT ts FROM samples"
    " WHERE gpu_id = ?1 AND (util_gpu_pct IS NULL OR util_gpu_pct >= ?2 OR error IS NOT NULL)"
    " ORDER BY ts DESC LIMIT 1), -1)"
)
RUN_READINGS_SQL = _READINGS_SQL + " WHERE gpu_id = ? AND ts >= ? ORDER BY ts DESC"
RUN_SPANS_SQL = _SPANS_SQL + " WHERE gpu_id = ? AND end_ts >= ?"
# The same three, up to a time (?3): where the run stood at a settled reading.
# Looked at from ?4 on only (see MAX_RUN_READINGS).
LOW_UTIL_SINCE_UPTO_SQL = (
    "SELECT MIN(ts) FROM samples WHERE gpu_id = ?1 AND ts <= ?3 AND ts >= ?4 AND ts > COALESCE("
    "(SELECT ts FROM samples WHERE gpu_id = ?1 AND ts <= ?3 AND ts >= ?4 AND (util_gpu_pct IS NULL"
    " OR util_gpu_pct >= ?2 OR error IS NOT NULL) ORDER BY ts DESC LIMIT 1), -1)"
)
# A run is walked back over at most MAX_RUN_READINGS readings (about 70 days at 60 s, 28 hours at
# 1 s), so that the walk stays well inside the query time limit; a run longer than that is shown
# as idle since the oldest of them, which is then a lower bound of its length.
MAX_RUN_READINGS = 100_000
LOOKBACK_FLOOR_SQL = (
    "SELECT ts FROM samples WHERE gpu_id = ? AND ts <= ? ORDER BY ts DESC LIMIT 1 OFFSET ?"
)
RUN_READINGS_UPTO_SQL = _READINGS_SQL + " WHERE gpu_id = ? AND ts >= ? AND ts <= ? ORDER BY ts DESC"
# The readings after a settled time, oldest first, and the spans that can cover them (by the end
# index: spans still open at that time, never the GPU's history).
READINGS_AFTER_SQL = _READINGS_SQL + " WHERE gpu_id = ? AND ts > ? ORDER BY ts"
SPANS_AFTER_SQL = _SPANS_SQL + " WHERE gpu_id = ? AND end_ts > ?"
IDLE_REFRESH_S = 600.0  # a remembered run is recomputed in full this often (replayed ticks)
# Readings this close to the newest are re-read on every call: a new tick extends a span over at
# most spans.MAX_GAP_INTERVALS (1.5) intervals, so it can turn an older reading's list known.
IDLE_SETTLE_INTERVALS = 2.0
KIND_NAMES = {code: name for name, code in KIND_CODES.items()}


@dataclass(frozen=True)
class ProcessList:
    """The processes of one GPU at one tick: ts None when no tick; processes None when unknown.

    Each process: {pid, kind, used_mem_bytes, visible, name, cmdline, user, container_id,
    container_name, since_ts}; since_ts is when its unbroken presence on the GPU began.
    """

    gpu: GpuRow | None
    ts: float | None
    processes: list[dict[str, Any]] | None


@dataclass(frozen=True)
class GpuIdle:
    """A GPU's newest reading, its process list there, and its idle-and-allocated run start."""

    gpu: GpuRow
    processes: ProcessList
    run_since_ts: float | None


def _interval_s(gpu: GpuRow) -> float:
    return gpu.interval_s or DEFAULT_INTERVAL_S


def _process_list(conn: sqlite3.Connection, gpu: GpuRow, ts: float | None) -> ProcessList:
    if ts is None:
        return ProcessList(gpu, None, None)
    if conn.execute(LIST_KNOWN_SQL, (gpu.gpu_id, ts)).fetchone() is None:
        return ProcessList(gpu, ts, None)
    gap_s = CHAIN_GAP_INTERVALS * _interval_s(gpu)
    processes = []
    for proc_id, kind, used, pid, visible, name, cmdline, user, cid, cname in conn.execute(
        PROCESSES_AT_SQL, (gpu.gpu_id, ts)
    ).fetchall():
        since_ts = ts
        for start_ts, end_ts in conn.execute(CHAIN_SQL, (gpu.gpu_id, proc_id, ts)):
            if end_ts + gap_s < since_ts:
                break
            since_ts = min(since_ts, start_ts)
        processes.append(
            {
                "pid": pid,
                "kind": KIND_NAMES.get(kind, "compute"),
                "used_mem_bytes": used,
                "visible": bool(visible),
                "name": name,
                "cmdline": cmdline,
                "user": user,
                "container_id": cid,
                "container_name": cname,
                "since_ts": since_ts,
            }
        )
    return ProcessList(gpu, ts, processes)


def processes_job(gpu_uuid: str, at_s: float | None) -> Callable[[sqlite3.Connection], ProcessList]:
    """Return a job reading a GPU's processes at its newest tick, or at the tick at or before at_s.

    The answer's gpu is None when the file does not know the GPU.
    """

    def job(conn: sqlite3.Connection) -> ProcessList:
        row = conn.execute(GPU_BY_UUID_SQL, (gpu_uuid,)).fetchone()
        if row is None:
            return ProcessList(None, None, None)
        gpu = GpuRow(*row)
        if at_s is None:
            found = conn.execute(LATEST_TICK_SQL, (gpu.gpu_id,)).fetchone()
        else:
            found = conn.execute(TICK_AT_SQL, (gpu.gpu_id, at_s)).fetchone()
        return _process_list(conn, gpu, None if found is None else found[0])

    return job


def usage_job(
    from_s: float, to_s: float, by: str
) -> Callable[[sqlite3.Connection], list[UsageSpan]]:
    """Return a job reading every process span that covers part of [from_s, to_s)."""
    sql = (
        f"SELECT {USAGE_KEY_SQL[by]}, s.start_ts, s.end_ts, s.used_mem_bytes FROM proc_spans AS s"
        " JOIN proc_identities AS i ON i.proc_id = s.proc_id"
        " WHERE s.gpu_id = ? AND s.end_ts >= ? AND s.start_ts < ?"
    )

    def job(conn: sqlite3.Connection) -> list[UsageSpan]:
        spans = []
        for gpu in _read_gpus(conn):
            interval_s = _interval_s(gpu)
            if gpu.last_ts + interval_s <= from_s or gpu.first_ts >= to_s:
                continue
            for key, start_ts, end_ts, used in conn.execute(
                sql, (gpu.gpu_id, from_s - interval_s, to_s)
            ):
                spans.append(UsageSpan(gpu.gpu_uuid, key, start_ts, end_ts, interval_s, used))
        return spans

    return job


def energy_job(
    from_s: float, to_s: float, hosts: Sequence[str]
) -> Callable[[sqlite3.Connection], list[GpuEnergy]]:
    """Return a job reading each GPU's energy up to each of its readings inside [from_s, to_s).

    Each reading in the range counts the energy since the reading before it, which may be
    before from_s (as the `energy` view's delta_j): consecutive ranges add up to their union.
    GPUs with a reading in the range, of the given hosts (all hosts when none is given).
    """

    def job(conn: sqlite3.Connection) -> list[GpuEnergy]:
        answer = []
        for gpu in _read_gpus(conn):
            if hosts and gpu.host not in hosts:
                continue
            if gpu.last_ts < from_s or gpu.first_ts >= to_s:
                continue
            before = conn.execute(ENERGY_BEFORE_SQL, (gpu.gpu_id, from_s)).fetchall()
            rows = conn.execute(ENERGY_READINGS_SQL, (gpu.gpu_id, from_s, to_s))
            sums = integrate(itertools.chain(before, rows), _interval_s(gpu))
            answer.append(
                GpuEnergy(
                    gpu.host,
                    gpu.gpu_uuid,
                    gpu.gpu_index,
                    gpu.gpu_name,
                    sums.counter_j,
                    sums.counter_pairs,
                    sums.power_j,
                    sums.power_pairs,
                )
            )
        return answer

    return job


def known_hosts_job() -> Callable[[sqlite3.Connection], set[str]]:
    """Return a job reading the host names the file knows."""

    def job(conn: sqlite3.Connection) -> set[str]:
        return {gpu.host for gpu in _read_gpus(conn)}

    return job


@dataclass(frozen=True)
class IdleMark:
    """Where a GPU's idle-and-allocated run stood at settled_ts, remembered between calls.

    since_ts: the run's first reading's ts among the readings up to settled_ts (None: no run
    there). The rest says which file state it was read from (first_ts, latest_ts: the GPU's
    first and newest reading then); made_s is time.monotonic seconds.
    """

    gpu_id: int
    first_ts: float
    interval_s: float | None
    util_pct: float
    latest_ts: float
    settled_ts: float
    since_ts: float | None
    made_s: float


class IdleRuns:
    """Remember each GPU's idle run at a settled reading, so that a call reads only newer ones.

    Shared by the worker threads, hence the lock. A mark is dropped (the run recomputed in full)
    when it is refresh_s old, so that replayed older ticks are taken in, or when the file moved
    under it: the GPU's first reading changed (a purge, an older replay), its newest went back.
    The first reading is read from `samples`, as a purge leaves the GPU's first_ts in `gpus`.
    """

    def __init__(
        self, refresh_s: float = IDLE_REFRESH_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._refresh_s = refresh_s
        self._clock = clock
        self._marks: dict[str, IdleMark] = {}
        self._lock = threading.Lock()

    def now_s(self) -> float:
        """Return the clock's time (monotonic seconds)."""
        return self._clock()

    def get(
        self, gpu: GpuRow, util_pct: float, first_ts: float, latest_ts: float
    ) -> IdleMark | None:
        """Return the GPU's mark if it still holds for the file as it is now, else None."""
        with self._lock:
            mark = self._marks.get(gpu.gpu_uuid)
        if mark is None:
            return None
        if (
            mark.gpu_id != gpu.gpu_id
            or mark.first_ts != first_ts
            or mark.interval_s != gpu.interval_s
            or mark.util_pct != util_pct
            or latest_ts < mark.latest_ts
            or self._clock() - mark.made_s >= self._refresh_s
        ):
            return None
        return mark

    def put(self, gpu_uuid: str, mark: IdleMark) -> None:
        """Remember a mark, unless one of a newer reading is there already."""
        with self._lock:
            held = self._marks.get(gpu_uuid)
            if held is None or mark.latest_ts >= held.latest_ts or mark.made_s > held.made_s:
                self._marks[gpu_uuid] = mark


def idle_job(
    util_pct: float, runs: IdleRuns | None = None
) -> Callable[[sqlite3.Connection], list[GpuIdle]]:
    """Return a job reading, per GPU, its newest process list and idle-and-allocated run start.

    run_since_ts is None unless the newest reading is idle-and-allocated (services/web/idle.py).
    With runs, each GPU's run goes on from where the last call left it (only the newer readings
    are read); without, it is found walking back over the whole run.
    """

    def job(conn: sqlite3.Connection) -> list[GpuIdle]:
        if runs is None:
            return [_gpu_idle(conn, gpu, util_pct) for gpu in _read_gpus(conn)]
        return [_gpu_idle_from_mark(conn, gpu, util_pct, runs) for gpu in _read_gpus(conn)]

    return job


def _low_util(reading: Reading, util_pct: float) -> bool:
    return (
        reading.error is None
        and reading.util_gpu_pct is not None
        and reading.util_gpu_pct < util_pct
    )


def _coverages(rows: Iterable[tuple[int, float, float, int | None]]) -> tuple[Coverage, Coverage]:
    """Return the (list known, memory held) coverages of span rows (proc_id, start, end, used)."""
    known, held = [], []
    for proc_id, start_ts, end_ts, used in rows:
        if proc_id == LIST_KNOWN_PROC_ID:
            known.append((start_ts, end_ts))
        elif used != 0:
            held.append((start_ts, end_ts))
    return Coverage(known), Coverage(held)


def _gpu_idle(conn: sqlite3.Connection, gpu: GpuRow, util_pct: float) -> GpuIdle:
    latest = conn.execute(IDLE_LATEST_SQL, (gpu.gpu_id,)).fetchone()
    if latest is None:
        return GpuIdle(gpu, ProcessList(gpu, None, None), None)
    processes = _process_list(conn, gpu, latest[0])
    if not _low_util(Reading(*latest), util_pct):
        return GpuIdle(gpu, processes, None)
    (low_since_ts,) = conn.execute(LOW_UTIL_SINCE_SQL, (gpu.gpu_id, util_pct)).fetchone()
    known, held = _coverages(conn.execute(RUN_SPANS_SQL, (gpu.gpu_id, low_since_ts)))
    readings = (Reading(*row) for row in conn.execute(RUN_READINGS_SQL, (gpu.gpu_id, low_since_ts)))
    return GpuIdle(gpu, processes, run_since(readings, util_pct, known, held))


def _since_up_to(
    conn: sqlite3.Connection, gpu: GpuRow, util_pct: float, up_to_ts: float
) -> float | None:
    """Return the idle-and-allocated run's start among the readings up to up_to_ts."""
    floor = conn.execute(
        LOOKBACK_FLOOR_SQL, (gpu.gpu_id, up_to_ts, MAX_RUN_READINGS - 1)
    ).fetchone()
    floor_ts = -1.0 if floor is None else floor[0]
    (low_since_ts,) = conn.execute(
        LOW_UTIL_SINCE_UPTO_SQL, (gpu.gpu_id, util_pct, up_to_ts, floor_ts)
    ).fetchone()
    if low_since_ts is None:
        return None
    known, held = _coverages(conn.execute(RUN_SPANS_SQL, (gpu.gpu_id, low_since_ts)))
    rows = conn.execute(RUN_READINGS_UPTO_SQL, (gpu.gpu_id, low_since_ts, up_to_ts))
    return run_since((Reading(*row) for row in rows), util_pct, known, held)


def _gpu_idle_from_mark(
    conn: sqlite3.Connection, gpu: GpuRow, util_pct: float, runs: IdleRuns
) -> GpuIdle:
    """Answer as _gpu_idle does, reading only the readings after the GPU's remembered mark."""
    latest = conn.execute(IDLE_LATEST_SQL, (gpu.gpu_id,)).fetchone()
    if latest is None:
        return GpuIdle(gpu, ProcessList(gpu, None, None), None)
    latest_ts = latest[0]
    (first_ts,) = conn.execute(IDLE_FIRST_SQL, (gpu.gpu_id,)).fetchone()
    processes = _process_list(conn, gpu, latest_ts)
    mark = runs.get(gpu, util_pct, first_ts, latest_ts)
    made_s = runs.now_s() if mark is None else mark.made_s

    def mark_at(settled_ts: float, since_ts: float | None) -> IdleMark:
        return IdleMark(
            gpu.gpu_id, first_ts, gpu.interval_s, util_pct, latest_ts, settled_ts, since_ts, made_s
        )

    if not _low_util(Reading(*latest), util_pct):
        # A utilization break holds whatever the spans say: nothing before it counts any more.
        if mark is None or mark.settled_ts < latest_ts:
            runs.put(gpu.gpu_uuid, mark_at(latest_ts, None))
        return GpuIdle(gpu, processes, None)
    settle_ts = latest_ts - IDLE_SETTLE_INTERVALS * _interval_s(gpu)
    if mark is None:
        settled_ts = settle_ts
        since_ts = _since_up_to(conn, gpu, util_pct, settled_ts)
    else:
        settled_ts, since_ts = mark.settled_ts, mark.since_ts
    known, held = _coverages(conn.execute(SPANS_AFTER_SQL, (gpu.gpu_id, settled_ts)))
    newer = [Reading(*row) for row in conn.execute(READINGS_AFTER_SQL, (gpu.gpu_id, settled_ts))]
    settling = [reading for reading in newer if reading.ts <= settle_ts]
    since_ts = run_since_after(since_ts, settling, util_pct, known, held)
    if settle_ts > settled_ts:
        settled_ts = settle_ts
    runs.put(gpu.gpu_uuid, mark_at(settled_ts, since_ts))
    rest = newer[len(settling) :]
    return GpuIdle(gpu, processes, run_since_after(since_ts, rest, util_pct, known, held))
