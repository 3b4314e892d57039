"""Keep each GPU's energy buckets (table energy_buckets, version 11) exact after each write.

A bucket [ts, ts + level_s) holds the energy up to each of its readings from the reading before
it, counted as common.energy_pairs.integrate counts it, so that /api/v1/energy sums whole buckets
and walks only its range's edges (services/web/energy_reads.py). A finest bucket that only gains
readings newer than its newest (last_ts: the usual case, a tick appended) is extended by the walk
over them, each new reading's pair being its own; any other is recomputed whole from the raw
readings (with the readings before the bucket that its first pairs need). Each coarser bucket is
recomputed from the level below, whose buckets tile it. A reading changes the pair of the
next error-free reading after it, which may lie in a later bucket (after a gap or an outage, or
when an older reading is replayed): that bucket is recomputed too.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Iterable

from common.energy_pairs import BEFORE_SQL, READINGS_SQL, EnergySums, integrate
from common.messages import Tick
from common.schema import ENERGY_BUCKET_LEVELS_S, bucket_start

FINE_S = ENERGY_BUCKET_LEVELS_S[0]
# A GPU whose interval the file does not hold: as services.web.rows.DEFAULT_INTERVAL_S. Which
# interval a bucket is made under only decides its gap bounds; a reader checks them.
_UNKNOWN_INTERVAL_S = 60.0
_COLUMNS = (
    "level_s, gpu_id, ts, counter_j, counter_pairs, power_j, power_pairs, counted_gap_max_s,"
    " skipped_gap_min_s, last_ts"
)
_UPSERT = (
    f"INSERT OR REPLACE INTO energy_buckets ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_STORED = (
    "SELECT counter_j, counter_pairs, power_j, power_pairs, counted_gap_max_s,"
    f" skipped_gap_min_s, last_ts FROM energy_buckets WHERE level_s = {FINE_S}"
    " AND gpu_id = ? AND ts = ?"
)
_DELETE = "DELETE FROM energy_buckets WHERE level_s = ? AND gpu_id = ? AND ts = ?"
_DELETE_BEFORE = "DELETE FROM energy_buckets WHERE level_s = ? AND gpu_id = ? AND ts < ?"
# The next error-free reading from a time on: the first whose pair a reading before it decides.
_NEXT_OK_SQL = (
    "SELECT ts FROM samples WHERE gpu_id = ? AND ts >= ? AND error IS NULL ORDER BY ts LIMIT 1"
)


def _roll_up_sql(level_s: int, finer_s: int) -> str:
    return (
        f"INSERT OR REPLACE INTO energy_buckets ({_COLUMNS}) SELECT {level_s}, ?1, ?2,"
        " total(counter_j), sum(counter_pairs), total(power_j), sum(power_pairs),"
        " max(counted_gap_max_s), min(skipped_gap_min_s), max(last_ts) FROM energy_buckets"
        f" WHERE level_s = {finer_s} AND gpu_id = ?1 AND ts >= ?2 AND ts < ?2 + {level_s}"
        " HAVING count(*) > 0"
    )


_ROLL_UP = {
    level_s: _roll_up_sql(level_s, finer_s)
    for finer_s, level_s in itertools.pairwise(ENERGY_BUCKET_LEVELS_S)
}


def _walk_from(
    conn: sqlite3.Connection, gpu_id: int, from_ts: float, end_ts: float, interval_s: float
) -> tuple[EnergySums, float] | None:
    """Return the walk over a GPU's readings in [from_ts, end_ts) and the newest one's time,
    None when there is none."""
    rows = conn.execute(READINGS_SQL, (gpu_id, from_ts, end_ts)).fetchall()
    if not rows:
        return None
    before = conn.execute(BEFORE_SQL, (gpu_id, from_ts)).fetchall()
    return integrate(itertools.chain(before, rows), interval_s), rows[-1][0]


def _write_fine(
    conn: sqlite3.Connection,
    gpu_id: int,
    start_ts: float,
    interval_s: float,
    new_from_ts: float | None = None,
) -> None:
    """Write one finest bucket: extended by its readings from new_from_ts on when all of them
    are newer than its stored newest reading, else recomputed whole."""
    end_ts = start_ts + FINE_S
    stored = None if new_from_ts is None else conn.execute(_STORED, (gpu_id, start_ts)).fetchone()
    if stored is not None and new_from_ts is not None and stored[6] < new_from_ts:
        added = _walk_from(conn, gpu_id, new_from_ts, end_ts, interval_s)
        if added is None:
            return
        sums, last_ts = EnergySums(*stored[:6]) + added[0], added[1]
    else:
        walked = _walk_from(conn, gpu_id, start_ts, end_ts, interval_s)
        if walked is None:
            conn.execute(_DELETE, (FINE_S, gpu_id, start_ts))
            return
        sums, last_ts = walked
    conn.execute(
        _UPSERT,
        (
            FINE_S,
            gpu_id,
            start_ts,
            sums.counter_j,
            sums.counter_pairs,
            sums.power_j,
            sums.power_pairs,
            sums.counted_gap_max_s,
            sums.skipped_gap_min_s,
            last_ts,
        ),
    )


def _recompute(
    conn: sqlite3.Connection, gpu_id: int, interval_s: float, fine: dict[float, float | None]
) -> int:
    """Write these finest buckets of a GPU ({start: the oldest reading written in it, None to
    recompute it whole}) and recompute the coarser ones holding them; return buckets written."""
    starts = sorted(fine)
    for start_ts in starts:
        _write_fine(conn, gpu_id, start_ts, interval_s, fine[start_ts])
    written = len(starts)
    for level_s in ENERGY_BUCKET_LEVELS_S[1:]:
        starts = sorted({bucket_start(ts, level_s) for ts in starts})
        for start_ts in starts:
            if conn.execute(_ROLL_UP[level_s], (gpu_id, start_ts)).rowcount == 0:
                conn.execute(_DELETE, (level_s, gpu_id, start_ts))  # none left: a purge
        written += len(starts)
    return written


def _with_followers(
    conn: sqlite3.Connection, gpu_id: int, fine: dict[float, float | None]
) -> dict[float, float | None]:
    """Add, to finest buckets whose readings changed, the bucket of the next error-free reading
    after each, to recompute whole: its first pair is against a reading of the changed bucket
    (or before it)."""
    followers: dict[float, float | None] = {}
    for start_ts in fine:
        row = conn.execute(_NEXT_OK_SQL, (gpu_id, start_ts + FINE_S)).fetchone()
        if row is not None:
            followers[bucket_start(row[0], FINE_S)] = None
    return {**fine, **followers}


def refresh(conn: sqlite3.Connection, ticks: list[Tick], gpu_ids: dict[str, int]) -> int:
    """Bring up to date the energy buckets the ticks' readings changed; return buckets written."""
    oldest: dict[tuple[float, tuple[str, ...]], float] = {}
    interval: dict[tuple[str, ...], float] = {}
    for tick in ticks:  # per tick, not per reading: consecutive ticks share their bucket
        uuids = tuple(gpu.uuid for gpu in tick.gpus)
        key = (bucket_start(tick.ts, FINE_S), uuids)
        oldest[key] = min(oldest.get(key, tick.ts), tick.ts)
        interval[uuids] = tick.interval_s
    touched: dict[int, dict[float, float | None]] = {}
    for (start_ts, uuids), from_ts in oldest.items():
        for uuid in uuids:
            fine = touched.setdefault(gpu_ids[uuid], {})
            known = fine.get(start_ts)
            fine[start_ts] = from_ts if known is None else min(known, from_ts)
    intervals = {gpu_ids[uuid]: value for uuids, value in interval.items() for uuid in uuids}
    return sum(
        _recompute(conn, gpu_id, intervals[gpu_id], _with_followers(conn, gpu_id, fine))
        for gpu_id, fine in touched.items()
    )


def refresh_times(
    conn: sqlite3.Connection, gpu_id: int, interval_s: float | None, stamps: Iterable[float]
) -> int:
    """Recompute a GPU's buckets that hold any of the given reading times, and those whose
    first pair they changed; return buckets written. For readings stored outside a batch of
    ticks (an import)."""
    fine: dict[float, float | None] = {bucket_start(ts, FINE_S): None for ts in stamps}
    return _recompute(
        conn, gpu_id, interval_s or _UNKNOWN_INTERVAL_S, _with_followers(conn, gpu_id, fine)
    )


def purge(
    conn: sqlite3.Connection, gpu_id: int, interval_s: float | None, before_ts: float
) -> None:
    """Delete a GPU's buckets that begin before before_ts, then recompute the one straddling it
    and the one holding its first error-free reading left (whose pair went with the purge).

    Run after the GPU's samples before before_ts are deleted, in the same transaction.
    """
    for level_s in ENERGY_BUCKET_LEVELS_S:
        conn.execute(_DELETE_BEFORE, (level_s, gpu_id, before_ts))
    fine: dict[float, float | None] = {bucket_start(before_ts, FINE_S): None}
    row = conn.execute(_NEXT_OK_SQL, (gpu_id, before_ts)).fetchone()
    if row is not None:
        fine[bucket_start(row[0], FINE_S)] = None
    _recompute(conn, gpu_id, interval_s or _UNKNOWN_INTERVAL_S, fine)
