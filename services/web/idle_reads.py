"""Read each GPU's idle-and-allocated run (services/web/idle.py), remembering where it stood.

Each call reads, per GPU, its newest reading and process list and only the readings that came
since the run's remembered mark (IdleRuns), never the whole run again. A job for Store.call().
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.idle import Coverage, Reading, low_util, run_since, run_since_after
from common.schema import LIST_KNOWN_PROC_ID
from services.web.gpu_reads import read_gpus
from services.web.process_reads import read_process_list
from services.web.rows import GpuIdle, GpuRow, ProcessList

# The columns of an idle Reading, and of span rows for coverages().
READINGS_SQL = "SELECT ts, util_gpu_pct, mem_used_bytes, mem_total_bytes, error FROM samples"
SPANS_SQL = "SELECT proc_id, start_ts, end_ts, used_mem_bytes FROM proc_spans"
IDLE_FIRST_SQL = "SELECT ts FROM samples WHERE gpu_id = ? ORDER BY ts LIMIT 1"
IDLE_LATEST_SQL = READINGS_SQL + " WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"
RUN_SPANS_SQL = SPANS_SQL + " WHERE gpu_id = ? AND end_ts >= ?"
# Where the run stood at a settled reading (?3): the first reading after the newest one up to
# it that is not under the utilization threshold, looked at from ?4 on only (MAX_RUN_READINGS).
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
RUN_READINGS_UPTO_SQL = READINGS_SQL + " WHERE gpu_id = ? AND ts >= ? AND ts <= ? ORDER BY ts DESC"
# The readings after a settled time, oldest first, and the spans that can cover them (by the end
# index: spans still open at that time, never the GPU's history).
READINGS_AFTER_SQL = READINGS_SQL + " WHERE gpu_id = ? AND ts > ? ORDER BY ts"
SPANS_AFTER_SQL = SPANS_SQL + " WHERE gpu_id = ? AND end_ts > ?"
IDLE_REFRESH_S = 600.0  # a remembered run is recomputed in full this often (replayed ticks)
# Readings this close to the newest are re-read on every call: a new tick extends a span over at
# most spans.MAX_GAP_INTERVALS (1.5) intervals, so it can turn an older reading's list known.
IDLE_SETTLE_INTERVALS = 2.0


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


def idle_job(util_pct: float, runs: IdleRuns) -> Callable[[sqlite3.Connection], list[GpuIdle]]:
    """Return a job reading, per GPU, its newest process list and idle-and-allocated run start.

    run_since_ts is None unless the newest reading is idle-and-allocated (services/web/idle.py).
    Each GPU's run goes on from where the last call left it in runs: only the newer readings
    are read.
    """

    def job(conn: sqlite3.Connection) -> list[GpuIdle]:
        return [_gpu_idle_from_mark(conn, gpu, util_pct, runs) for gpu in read_gpus(conn)]

    return job


def coverages(rows: Iterable[tuple[int, float, float, int | None]]) -> tuple[Coverage, Coverage]:
    """Return the (list known, memory held) coverages of span rows (proc_id, start, end, used)."""
    known, held = [], []
    for proc_id, start_ts, end_ts, used in rows:
        if proc_id == LIST_KNOWN_PROC_ID:
            known.append((start_ts, end_ts))
        elif used != 0:
            held.append((start_ts, end_ts))
    return Coverage(known), Coverage(held)


def read_latest(conn: sqlite3.Connection, gpu: GpuRow) -> tuple[Reading | None, ProcessList]:
    """Return the GPU's newest reading (None when it has none) and its process list there."""
    row = conn.execute(IDLE_LATEST_SQL, (gpu.gpu_id,)).fetchone()
    if row is None:
        return None, ProcessList(gpu, None, None)
    latest = Reading(*row)
    return latest, read_process_list(conn, gpu, latest.ts)


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
    known, held = coverages(conn.execute(RUN_SPANS_SQL, (gpu.gpu_id, low_since_ts)))
    rows = conn.execute(RUN_READINGS_UPTO_SQL, (gpu.gpu_id, low_since_ts, up_to_ts))
    return run_since((Reading(*row) for row in rows), util_pct, known, held)


def _gpu_idle_from_mark(
    conn: sqlite3.Connection, gpu: GpuRow, util_pct: float, runs: IdleRuns
) -> GpuIdle:
    """Return the GPU's idle answer, reading only the readings after its remembered mark."""
    latest, processes = read_latest(conn, gpu)
    if latest is None:
        return GpuIdle(gpu, processes, None)
    latest_ts = latest.ts
    (first_ts,) = conn.execute(IDLE_FIRST_SQL, (gpu.gpu_id,)).fetchone()
    mark = runs.get(gpu, util_pct, first_ts, latest_ts)
    made_s = runs.now_s() if mark is None else mark.made_s

    def mark_at(settled_ts: float, since_ts: float | None) -> IdleMark:
        return IdleMark(
            gpu.gpu_id, first_ts, gpu.interval_s, util_pct, latest_ts, settled_ts, since_ts, made_s
        )

    if not low_util(latest, util_pct):
        # A utilization break holds whatever the spans say: nothing before it counts any more.
        if mark is None or mark.settled_ts < latest_ts:
            runs.put(gpu.gpu_uuid, mark_at(latest_ts, None))
        return GpuIdle(gpu, processes, None)
    settle_ts = latest_ts - IDLE_SETTLE_INTERVALS * gpu.sampling_interval_s
    if mark is None:
        settled_ts = settle_ts
        since_ts = _since_up_to(conn, gpu, util_pct, settled_ts)
    else:
        settled_ts, since_ts = mark.settled_ts, mark.since_ts
    known, held = coverages(conn.execute(SPANS_AFTER_SQL, (gpu.gpu_id, settled_ts)))
    newer = [Reading(*row) for row in conn.execute(READINGS_AFTER_SQL, (gpu.gpu_id, settled_ts))]
    settling = [reading for reading in newer if reading.ts <= settle_ts]
    since_ts = run_since_after(since_ts, settling, util_pct, known, held)
    if settle_ts > settled_ts:
        settled_ts = settle_ts
    runs.put(gpu.gpu_uuid, mark_at(settled_ts, since_ts))
    rest = newer[len(settling) :]
    return GpuIdle(gpu, processes, run_since_after(since_ts, rest, util_pct, known, held))
