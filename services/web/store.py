"""Own the web process's connections to the SQLite file: read-only, off the event loop.

- A connection per reader thread, opened `mode=ro` (the web process writes only a user's own
  actions on alerts, each on a connection of its own: services/web/alert_writes.py),
  its page cache bounded to cache_bytes (PCW_READER_CACHE_BYTES): the process holds up to
  (live + range readers) x cache_bytes of pages.
- Each call, `store.call(job, empty, long=...)`, runs job(conn) in one read transaction (one
  snapshot) under a time limit enforced by SQLite's progress handler.
- Two lanes of reader threads: the live view's (key look-ups, milliseconds) and range reads
  (long=True: history, usage, energy), so the live view never waits behind a long range. A lane
  holds at most its threads plus its queue; past that a call is refused at once with
  StoreBusyError, which the API answers 503 with Retry-After.
- Before the writer has made the file or its tables, a call returns its `empty` answer; the file
  is opened on the first call after it appears. A file deleted or replaced while the process
  runs is noticed by its inode at the next call, and the path is opened anew.
- The jobs, with their SQL, sit beside their concern: gpu_reads, history_reads, process_reads,
  energy_reads, idle_reads; the rows they answer are in rows.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from common.dbfile import FileIdentity, cache_size_pragma, database_bytes, file_identity
from common.schema import SCHEMA_VERSION, schema_version

logger = logging.getLogger(__name__)

QUERY_TIME_LIMIT_S = 10.0
# SQLite VM instructions between two looks at the clock: ~5 ms of a range read (~18 M a second
# here). Each look takes the GIL; at 1,000 (every ~55 us) two range-read threads sharing one
# history answer (ordered_reads) spent their time handing the GIL to each other.
PROGRESS_STEPS = 100_000
BUSY_TIMEOUT_S = 2.0
LIVE_READERS = 2
LIVE_READ_QUEUE = 64
RANGE_READERS = 2
RANGE_READ_QUEUE = 8
CACHE_BYTES = 1 << 20  # per reader thread: PCW_READER_CACHE_BYTES's default
DURATION_WEIGHT = 0.2  # of the newest call in a lane's moving mean duration

T = TypeVar("T")


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
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self._db_path = db_path
        self._cache_bytes = cache_bytes
        self._uri = db_path.resolve().as_uri() + "?mode=ro"
        self._time_limit_s = time_limit_s
        self._live = _Lane("live", live, time_limit_s)
        self._ranges = _Lane("range", ranges, time_limit_s)
        self._state = _ThreadState()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self._closing = False

    @property
    def db_path(self) -> Path:
        """Return the path of the SQLite file."""
        return self._db_path

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
        conn.execute(cache_size_pragma(self._cache_bytes))  # touches no page of the file

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
