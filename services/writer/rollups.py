"""Keep the rollup tables in step with the raw samples, exactly, after each batch.

A batch touches a few buckets per GPU and level; each touched bucket is recomputed whole from
the level below it (the raw samples for the finest level the GPU's interval allows), so a
replayed or duplicated reading can never be counted twice.

A finest bucket that holds only the batch's own rows (it starts after the GPU's newest reading
before the batch, and every row of the batch was new) is summed from those rows in Python
rather than read back from the file: the same count, sums and maxima, found without SQLite
evaluating 63 aggregates over each row it has just written. That is most of the buckets of a
burst; the others are read back as before.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from common.messages import Tick
from common.metrics import METRIC_NAMES
from common.schema import ROLLUP_LEVELS_S, bucket_start, rollup_levels_for, rollup_table

RAW = "samples"
_UUID = operator.attrgetter("uuid")


def _columns() -> str:
    return ", ".join(f"{m}_sum, {m}_n, {m}_max" for m in METRIC_NAMES)


def _from_raw() -> str:
    return ", ".join(f"sum({m}), count({m}), max({m})" for m in METRIC_NAMES)


def _from_rollup() -> str:
    return ", ".join(f"sum({m}_sum), sum({m}_n), max({m}_max)" for m in METRIC_NAMES)


def refresh_sql(level_s: int, source: str) -> str:
    """Return the statement that recomputes one bucket (gpu_id, bucket_ts) of a level."""
    aggregates = f"count(*), {_from_raw()}" if source == RAW else f"sum(n), {_from_rollup()}"
    return (
        f"INSERT OR REPLACE INTO {rollup_table(level_s)} (gpu_id, ts, n, {_columns()}) "
        f"SELECT ?1, ?2, {aggregates} FROM {source} "
        f"WHERE gpu_id = ?1 AND ts >= ?2 AND ts < ?2 + {level_s} HAVING count(*) > 0"
    )


def insert_sql(level_s: int) -> str:
    """Return the statement that writes one bucket of a level from its values."""
    marks = ", ".join("?" for _ in range(3 + 3 * len(METRIC_NAMES)))
    return (
        f"INSERT OR REPLACE INTO {rollup_table(level_s)} (gpu_id, ts, n, {_columns()})"
        f" VALUES ({marks})"
    )


_INSERT = {level_s: insert_sql(level_s) for level_s in ROLLUP_LEVELS_S}
SampleRow = tuple[Any, ...]  # (gpu_id, ts, error, *metrics in METRIC_NAMES order)


@dataclass(frozen=True)
class NewRows:
    """A batch's rows of `samples`, every one newly inserted, and each GPU's newest reading
    time before the batch (None: it had none)."""

    rows: Sequence[SampleRow]
    newest_before: Mapping[int, float | None]

    def buckets(self, level_s: int) -> dict[tuple[int, float], list[SampleRow]]:
        """Return the rows by (gpu_id, bucket start) of the level, of the buckets that hold
        nothing else: those that start after their GPU's newest reading before the batch."""
        found: dict[tuple[int, float], list[SampleRow]] = {}
        newest = self.newest_before
        starts: dict[float, float] = {}  # a tick's readings share their time: one look-up each
        for row in self.rows:
            gpu_id, ts = row[0], row[1]
            start = starts.get(ts)
            if start is None:
                start = starts[ts] = bucket_start(ts, level_s)
            before = newest.get(gpu_id)
            if before is None or start > before:
                found.setdefault((gpu_id, start), []).append(row)
        return found


def aggregate(gpu_id: int, start: float, rows: Sequence[SampleRow]) -> tuple[Any, ...]:
    """Return a bucket's values from all its raw rows, as refresh_sql's SELECT finds them:
    the row count, then per metric the sum (NULL when none), the non-null count and the max."""
    values: list[Any] = [gpu_id, start, len(rows)]
    for column in list(zip(*sorted(rows, key=_TS), strict=True))[3:]:
        try:
            values += (sum(column), len(column), max(column))
        except TypeError:  # a NULL among them (adding None fails): sum what is known
            known = [v for v in column if v is not None]
            values += (sum(known), len(known), max(known)) if known else (None, 0, None)
    return tuple(values)


_TS = operator.itemgetter(1)


_REFRESH = {
    (level_s, source): refresh_sql(level_s, source)
    for level_s in ROLLUP_LEVELS_S
    for source in (RAW, *map(rollup_table, ROLLUP_LEVELS_S))
}


def touched_buckets(
    ticks: Iterable[Tick], gpu_ids: dict[str, int]
) -> dict[int, set[tuple[str, int, float]]]:
    """Return, per level, the (source table, gpu_id, bucket start) that the ticks changed.

    Per tick, not per reading: ticks of the same GPUs and interval are grouped, and each group's
    bucket starts are taken once for all its GPUs.
    """
    groups: dict[tuple[float, tuple[str, ...]], list[float]] = {}
    for tick in ticks:
        groups.setdefault((tick.interval_s, tuple(map(_UUID, tick.gpus))), []).append(tick.ts)
    touched: dict[int, set[tuple[str, int, float]]] = {level: set() for level in ROLLUP_LEVELS_S}
    for (interval_s, uuids), stamps in groups.items():
        ids = [gpu_ids[uuid] for uuid in uuids]
        source = RAW
        for level_s in rollup_levels_for(interval_s):
            starts = {bucket_start(ts, level_s) for ts in stamps}
            touched[level_s].update((source, gpu_id, start) for gpu_id in ids for start in starts)
            source = rollup_table(level_s)
    return touched


def refresh(
    conn: sqlite3.Connection,
    ticks: list[Tick],
    gpu_ids: dict[str, int],
    new_rows: NewRows | None = None,
) -> int:
    """Recompute every bucket the ticks touched, finest level first; return buckets written.

    new_rows: the batch's rows when every one was new (see NewRows): the finest buckets that
    hold only them are summed from them (see the module's docstring).
    """
    written = 0
    for level_s, buckets in sorted(touched_buckets(ticks, gpu_ids).items()):
        by_source: dict[str, list[tuple[int, float]]] = {}
        for source, gpu_id, bucket_ts in sorted(buckets):
            by_source.setdefault(source, []).append((gpu_id, bucket_ts))
        for source, params in by_source.items():
            if source == RAW and new_rows is not None:
                alone = new_rows.buckets(level_s)
                summed = [aggregate(*key, alone[key]) for key in params if key in alone]
                conn.executemany(_INSERT[level_s], summed)
                written += len(summed)
                params = [key for key in params if key not in alone]
            conn.executemany(_REFRESH[level_s, source], params)
            written += len(params)
    return written


def purge(
    conn: sqlite3.Connection, gpu_id: int, interval_s: float | None, before_ts: float
) -> None:
    """Delete a GPU's buckets before before_ts, then recompute those that straddle it from raw.

    Run after the GPU's samples before before_ts are deleted: a bucket that began before the
    cutoff but ends after it keeps exactly the readings left in it (none: it is gone), so the
    rollups agree with the raw rows at the retention edge.
    """
    for level_s in ROLLUP_LEVELS_S:
        conn.execute(
            f"DELETE FROM {rollup_table(level_s)} WHERE gpu_id = ? AND ts < ?", (gpu_id, before_ts)
        )
    # A GPU never given an interval (a file from before version 3) has no rollups to recompute.
    levels = rollup_levels_for(interval_s) if interval_s is not None else ()
    for level_s in levels:
        bucket_ts = bucket_start(before_ts, level_s)
        if bucket_ts < before_ts:
            conn.execute(_REFRESH[level_s, RAW], (gpu_id, bucket_ts))


def refresh_times(
    conn: sqlite3.Connection, gpu_id: int, interval_s: float, stamps: Iterable[float]
) -> int:
    """Recompute a GPU's buckets that hold any of the given reading times; return buckets written.

    For readings stored outside a batch of ticks (an import), finest level first.
    """
    written = 0
    source = RAW
    times = list(stamps)
    for level_s in rollup_levels_for(interval_s):
        buckets = sorted({bucket_start(ts, level_s) for ts in times})
        conn.executemany(_REFRESH[level_s, source], [(gpu_id, bucket) for bucket in buckets])
        written += len(buckets)
        source = rollup_table(level_s)
    return written
