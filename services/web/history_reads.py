"""Read the history API's buckets of each GPU, from the raw samples or a rollup table.

A job for Store.call() (a range read: long=True), and the SQL it runs.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from common.metrics import METRIC_NAMES, METRICS
from common.schema import rollup_levels_for, rollup_table
from services.web.gpu_reads import read_gpus
from services.web.history_cache import CacheKey, Columns, HistoryCache, items_join
from services.web.rows import GpuBuckets, GpuRow, HistoryRows


def history_sql(metrics: Sequence[str], level_s: int | None = None) -> str:
    """Return the bucketed range query of one GPU: one key range scan over (gpu_id, ts).

    From the raw samples (level_s None) or from the rollup table of level_s, whose buckets each
    fall inside one of ours (see rollup_level; where a rollup row is a bucket, history_json_sql
    looks each up by its key instead). Parameters: step_s, last bucket number, gpu_id,
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
    else:
        table, count = rollup_table(level_s), "SUM(n)"
        aggregates = ", ".join(
            f"CAST(SUM({name}_sum) AS REAL) / SUM({name}_n), MAX({name}_max)" for name in metrics
        )
    return (
        f"SELECT MIN(CAST(ts / ?1 AS INTEGER), ?2) AS bucket, {count}, {aggregates} FROM {table} "
        "WHERE gpu_id = ?3 AND ts >= ?4 AND ts < ?5 GROUP BY bucket ORDER BY bucket"
    )


def _bucket_source(
    metrics: Sequence[str], level_s: int | None, step_s: int
) -> tuple[str, str, dict[str, str], dict[str, str]]:
    """Return the WITH clause, the join and each metric's mean and max expression of a bucket.

    Where a rollup row is a bucket (level_s == step_s), each bucket is one key look-up on the
    rollup table; else the buckets are history_sql's grouping, joined by bucket number.
    """
    if level_s is not None and level_s == step_s:
        source = f"LEFT JOIN {rollup_table(level_s)} AS b ON b.gpu_id = ?3 AND b.ts = slots.k * ?1"
        mean_of = {name: f"CAST(b.{name}_sum AS REAL) / b.{name}_n" for name in metrics}
        max_of = {name: f"b.{name}_max" for name in metrics}
        return "", source, mean_of, max_of
    columns = ", ".join(f"c{i}" for i in range(2 * len(metrics)))
    mean_of = {name: f"b.c{2 * i}" for i, name in enumerate(metrics)}
    max_of = {name: f"b.c{2 * i + 1}" for i, name in enumerate(metrics)}
    with_clause = f", b(bucket, n, {columns}) AS ({history_sql(metrics, level_s)})"
    return with_clause, "LEFT JOIN b ON b.bucket = slots.k", mean_of, max_of


def history_json_sql(metrics: Sequence[str], level_s: int | None, step_s: int) -> str:
    """Return the query that answers one GPU's buckets as the API's JSON array, built by SQLite.

    Every bucket first..last is present, in order (a recursive count of bucket numbers drives a
    left join), so a bucket with no reading is {"ts", "count": 0, "mean": null, "max": null}.
    Where a rollup row is a bucket (level_s == step_s), each bucket is one key look-up; else the
    buckets come from history_sql. Building the JSON in SQLite's C code takes a few ms where
    Python dicts took tens. Parameters: step_s, last bucket, gpu_id, low_s, high_s, first bucket.
    """
    with_clause, source, mean_of, max_of = _bucket_source(metrics, level_s, step_s)
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


# Decimals a mean keeps in the columns shape, by the metric's stored type: a mean of whole
# percents, degrees, MHz or bytes is shown whole; watts and joules to the hundredth. The old
# rows shape printed 15 digits, most of the answer's bytes and none of its meaning.
MEAN_DECIMALS = {metric.name: 0 if metric.sql_type == "INTEGER" else 2 for metric in METRICS}


def _rounded(expr: str, name: str) -> str:
    """Return expr rounded to what metric `name` carries (SQLite's round: half away from 0)."""
    if MEAN_DECIMALS[name] == 0:
        return f"CAST(round({expr}) AS INTEGER)"
    return f"round({expr}, {MEAN_DECIMALS[name]})"


def columns_sql(metrics: Sequence[str], level_s: int | None, step_s: int) -> str:
    """Return the query that answers one GPU's buckets as three JSON columns, built by SQLite.

    The same buckets, gaps and values as history_json_sql, one array per statistic: the reading
    counts (0 in a gap), then {metric: [mean per bucket]} and {metric: [max per bucket]}, null
    where the bucket holds no value of the metric; means rounded (MEAN_DECIMALS). The arrays
    follow the bucket numbers first..last in order. Parameters as history_json_sql's.
    """
    with_clause, source, mean_of, max_of = _bucket_source(metrics, level_s, step_s)
    mean = ", ".join(
        f"'{name}', json_group_array({_rounded(mean_of[name], name)})" for name in metrics
    )
    top = ", ".join(f"'{name}', json_group_array({max_of[name]})" for name in metrics)
    return (
        "WITH RECURSIVE slots(k) AS (SELECT ?6 UNION ALL SELECT k + 1 FROM slots WHERE k < ?2)"
        f"{with_clause} "
        f"SELECT json_group_array(coalesce(b.n, 0)), json_object({mean}), json_object({top}) "
        f"FROM slots {source} WHERE ?4 < ?5"
    )


def span_columns_sql(metrics: Sequence[str], level_s: int | None, step_s: int) -> str:
    """Return the query that answers one GPU's buckets holding readings as JSON arrays.

    columns_sql's values from one key range scan, without its gaps: rows read in key order
    cost a quarter of rows looked up bucket by bucket (30 days of 64 GPUs: ~5 against ~20 ms,
    of ~55 ms for the whole query). Columns: how many buckets hold readings, the start (UTC
    epoch seconds) of the first and of the last, the counts, then each metric's means, then
    each metric's maxima. Where the buckets holding readings follow each other with none
    missing, the answer is these arrays with the gaps at both ends added (_columns_from_sql);
    else columns_sql fills the gaps between. Parameters: step_s, last bucket, gpu_id, low_s,
    high_s.
    """
    if level_s is not None and level_s == step_s:  # a row per bucket, its start as ts
        means = [_rounded(f"CAST({name}_sum AS REAL) / {name}_n", name) for name in metrics]
        arrays = ", ".join(
            ["json_group_array(n)"]
            + [f"json_group_array({mean})" for mean in means]
            + [f"json_group_array({name}_max)" for name in metrics]
        )
        return (
            f"SELECT count(*), min(ts), max(ts), {arrays} FROM {rollup_table(level_s)} "
            "WHERE gpu_id = ?3 AND ts >= ?4 AND ts < ?5"
        )
    columns = ", ".join(f"c{i}" for i in range(2 * len(metrics)))
    arrays = ", ".join(
        ["json_group_array(n)"]
        + [f"json_group_array({_rounded(f'c{2 * i}', name)})" for i, name in enumerate(metrics)]
        + [f"json_group_array(c{2 * i + 1})" for i in range(len(metrics))]
    )
    return (
        f"WITH b(bucket, n, {columns}) AS ({history_sql(metrics, level_s)}) "
        f"SELECT count(*), min(bucket) * ?1, max(bucket) * ?1, {arrays} FROM b"
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


def history_job(
    gpu_uuids: Sequence[str],
    first_bucket: int,
    bucket_count: int,
    step_s: int,
    metrics: Sequence[str],
    hosts: Sequence[str] = (),
) -> Callable[[sqlite3.Connection], HistoryRows]:
    """Return a job reading the buckets first_bucket.. (each step_s seconds) of the named GPUs.

    Whole buckets are read, so a bucket's value never depends on where the range cut it.
    With no UUIDs, every GPU whose first..last reading overlaps the buckets is chosen.
    With hosts, only GPUs of those hosts are chosen (both given: the named GPUs of those hosts).
    As rows (GpuBuckets, shape=rows); the columns answer is read GPU by GPU (history_body).
    """
    last_bucket = first_bucket + bucket_count - 1
    low_s, high_s = first_bucket * step_s, (last_bucket + 1) * step_s

    def job(conn: sqlite3.Connection) -> HistoryRows:
        choice = choose_gpus(conn, gpu_uuids, hosts, low_s, high_s)
        series: list[GpuBuckets] = []
        for gpu in choice.gpus:
            level_s = rollup_level(step_s, gpu.interval_s)
            params = (step_s, last_bucket, gpu.gpu_id, low_s, high_s, first_bucket)
            sql = history_json_sql(metrics, level_s, step_s)
            series.append(GpuBuckets(gpu, conn.execute(sql, params).fetchone()[0]))
        return HistoryRows(series, choice.missing_uuids, choice.missing_hosts)

    return job


@dataclass(frozen=True)
class GpuChoice:
    """The GPUs a history answer reads, and the UUIDs and hosts asked for that the file lacks."""

    gpus: list[GpuRow]
    missing_uuids: list[str]
    missing_hosts: list[str]


def choose_gpus(
    conn: sqlite3.Connection,
    gpu_uuids: Sequence[str],
    hosts: Sequence[str],
    low_s: float,
    high_s: float,
) -> GpuChoice:
    """Return the GPUs to read for [low_s, high_s): the named ones (in the order named), or
    with no UUIDs every GPU whose first..last reading overlaps it; with hosts, only theirs."""
    gpus = read_gpus(conn)
    if gpu_uuids:
        by_uuid = {gpu.gpu_uuid: gpu for gpu in gpus}
        chosen = [by_uuid[uuid] for uuid in gpu_uuids if uuid in by_uuid]
        missing = [uuid for uuid in gpu_uuids if uuid not in by_uuid]
    else:
        chosen = [gpu for gpu in gpus if gpu.last_ts >= low_s and gpu.first_ts < high_s]
        missing = []
    stored_hosts = {gpu.host for gpu in gpus}
    missing_hosts = [host for host in hosts if host not in stored_hosts]
    if hosts:
        chosen = [gpu for gpu in chosen if gpu.host in hosts]
    return GpuChoice(chosen, missing, missing_hosts)


_ENCODE = msgspec.json.Encoder().encode
_DECODE_COUNTS = msgspec.json.Decoder(list[int]).decode
_DECODE_VALUES = msgspec.json.Decoder(dict[str, list[float | int | None]]).decode


def _gaps(count: int, filler: str) -> str:
    """Return `count` fillers as the items of a JSON array (history_cache.items_slice)."""
    return ",".join([filler] * count)


def _columns_from_sql(
    conn: sqlite3.Connection,
    gpu_id: int,
    level_s: int | None,
    step_s: int,
    first_bucket: int,
    last_bucket: int,
    metrics: Sequence[str],
) -> Columns:
    """Return buckets first..last of one GPU: span_columns_sql's arrays as SQLite wrote them,
    with the gaps at either end added; columns_sql's where a gap lies between readings."""
    low_s, high_s = first_bucket * step_s, (last_bucket + 1) * step_s
    row = conn.execute(
        span_columns_sql(metrics, level_s, step_s),
        (step_s, last_bucket, gpu_id, low_s, high_s),
    ).fetchone()
    held, first_s, last_s = row[0], row[1], row[2]
    if not held:
        count = last_bucket - first_bucket + 1
        nulls = _gaps(count, "null")
        return Columns(
            first_bucket,
            [0] * count,
            dict.fromkeys(metrics, nulls),
            dict.fromkeys(metrics, nulls),
            _gaps(count, "0"),
        )
    # As the SQL's bucket numbers: floor(ts / step_s), capped at the last bucket.
    lowest = min(math.floor(first_s / step_s), last_bucket)
    highest = min(math.floor(last_s / step_s), last_bucket)
    if held != highest - lowest + 1:  # a gap between readings
        sql = columns_sql(metrics, level_s, step_s)
        params = (step_s, last_bucket, gpu_id, low_s, high_s, first_bucket)
        return _columns_with_gaps(conn, sql, params, first_bucket)
    lead, trail = lowest - first_bucket, last_bucket - highest
    arrays = [text[1:-1] for text in row[4:]]  # the items, without the brackets
    lead_nulls, trail_nulls = _gaps(lead, "null"), _gaps(trail, "null")
    padded = [items_join(items_join(lead_nulls, items), trail_nulls) for items in arrays]
    count = len(metrics)
    counts_items = items_join(items_join(_gaps(lead, "0"), row[3][1:-1]), _gaps(trail, "0"))
    return Columns(
        first_bucket,
        [0] * lead + _DECODE_COUNTS(row[3]) + [0] * trail,
        dict(zip(metrics, padded[:count], strict=True)),
        dict(zip(metrics, padded[count:], strict=True)),
        counts_items,
    )


def _columns_with_gaps(
    conn: sqlite3.Connection, sql: str, params: tuple[int, ...], first_bucket: int
) -> Columns:
    """Return buckets first..last of one GPU, read with columns_sql (a bucket at a time);
    params: (step_s, last_bucket, gpu_id, low_s, high_s, first_bucket), as _columns_from_sql's."""
    counts, means, maxima = conn.execute(sql, params).fetchone()

    def items(arrays: str) -> dict[str, str]:
        return {
            name: _ENCODE(values)[1:-1].decode() for name, values in _DECODE_VALUES(arrays).items()
        }

    return Columns(first_bucket, _DECODE_COUNTS(counts), items(means), items(maxima), counts[1:-1])


def readings_in_sql(level_s: int | None) -> str:
    """Return the query counting a GPU's readings in [?2, ?3), from the table its buckets come
    from: what validates a cached stretch of closed buckets (history_cache)."""
    if level_s is None:
        return "SELECT count(*) FROM samples WHERE gpu_id = ?1 AND ts >= ?2 AND ts < ?3"
    return (
        f"SELECT total(n) FROM {rollup_table(level_s)} WHERE gpu_id = ?1 AND ts >= ?2 AND ts < ?3"
    )


def _still_counts(
    conn: sqlite3.Connection, gpu_id: int, level_s: int | None, step_s: int, cached: Columns
) -> bool:
    """Return whether the file still counts the cached buckets' readings (none late or gone)."""
    counted = conn.execute(
        readings_in_sql(level_s), (gpu_id, cached.first * step_s, cached.end * step_s)
    ).fetchone()[0]
    return int(counted) == sum(cached.counts)


def read_columns(
    conn: sqlite3.Connection,
    gpu: GpuRow,
    level_s: int | None,
    step_s: int,
    first_bucket: int,
    last_bucket: int,
    metrics: Sequence[str],
    cache: HistoryCache | None,
) -> Columns:
    """Return buckets first..last of one GPU as columns, reading only what the cache lacks.

    The buckets before the one that holds the GPU's newest reading are closed and are kept in
    the cache. A cached stretch is used when the readings the file counts in it are still its
    counts' sum (a late or purged reading changes that); then only the buckets after it (the
    open edge) are read.
    """
    if cache is None:
        return _columns_from_sql(
            conn, gpu.gpu_id, level_s, step_s, first_bucket, last_bucket, metrics
        )
    key: CacheKey = (gpu.gpu_id, step_s, level_s, tuple(metrics))
    closed_end = max(first_bucket, min(last_bucket + 1, math.floor(gpu.last_ts / step_s)))
    held = cache.get(key)
    if held is not None and held.first <= first_bucket < held.end:
        hit_end = min(closed_end, held.end)
        cached = held.slice(first_bucket, hit_end)
        if hit_end > first_bucket and _still_counts(conn, gpu.gpu_id, level_s, step_s, cached):
            if hit_end > last_bucket:
                return cached
            edge = _columns_from_sql(
                conn, gpu.gpu_id, level_s, step_s, hit_end, last_bucket, metrics
            )
            whole = cached.then(edge)
            if closed_end > held.end:
                cache.put(key, whole.slice(first_bucket, closed_end))
            return whole
    whole = _columns_from_sql(conn, gpu.gpu_id, level_s, step_s, first_bucket, last_bucket, metrics)
    if closed_end > first_bucket:
        cache.put(key, whole.slice(first_bucket, closed_end))
    return whole
