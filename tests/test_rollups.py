"""Rollups are exact, replay-safe, and the history query reads them by key."""

from __future__ import annotations

import math
import random
import sqlite3

import pytest

from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from common.schema import MIGRATIONS, ROLLUP_LEVELS_S, rollup_levels_for, rollup_table
from services.web.history_reads import columns_sql, history_json_sql, history_sql, rollup_level
from services.writer.store import Store

INTERVAL_S = 10.0
START_TS = 1_790_000_000.0  # a multiple of 3600


def _reading(rng: random.Random, index: int) -> GpuReading:
    """Return a reading with some metrics null, sometimes all of them (a GPU in error)."""
    if rng.random() < 0.05:
        return GpuReading(index=index, uuid=f"GPU-r{index}", name="R", error="GPU is lost")
    return GpuReading(
        index=index,
        uuid=f"GPU-r{index}",
        name="R",
        util_gpu_pct=rng.randint(0, 100),
        util_mem_pct=None if rng.random() < 0.3 else rng.randint(0, 100),
        mem_used_bytes=rng.randint(0, 80 << 30),
        mem_total_bytes=80 << 30,
        temp_c=rng.randint(30, 90),
        power_w=rng.uniform(50, 700),
        power_limit_w=700.0,
        energy_j=rng.uniform(0, 1e9),
        fan_pct=None if index else rng.randint(0, 100),
        sm_clock_mhz=rng.randint(200, 2000),
        mem_clock_mhz=2619,
        pstate=rng.choice([0, 2, 8]),
    )


def _ticks(rng: random.Random, count: int) -> list[Tick]:
    ticks = []
    for seq in range(count):
        if 300 <= seq < 420:  # a 20-minute gap
            continue
        gpus = [_reading(rng, index) for index in range(2)]
        ticks.append(
            Tick(
                host="r",
                sampler_id="s",
                seq=seq,
                ts=START_TS + seq * INTERVAL_S,
                interval_s=INTERVAL_S,
                gpus=gpus,
            )
        )
    return ticks


@pytest.fixture(scope="module")
def db_path(tmp_path_factory):
    rng = random.Random(7)
    path = tmp_path_factory.mktemp("rollups") / "gpu_stats.db"
    store = Store(path)
    ticks = _ticks(rng, 2000)  # 5.5 hours
    for start in range(0, len(ticks), 97):  # batches that cut buckets anywhere
        store.write(ticks[start : start + 97])
    store.write(ticks[500:900])  # a replay of stored ticks: must not count twice
    store.write(rng.sample(ticks, 50))
    store.close()
    return path


def _connect(path):
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True)


def _raw_aggregates(conn, gpu_id: int, level_s: int) -> dict[float, tuple]:
    columns = ", ".join(f"sum({m}), count({m}), max({m})" for m in METRIC_NAMES)
    rows = conn.execute(
        f"SELECT CAST(ts / {level_s} AS INTEGER) * {level_s}, count(*), {columns} FROM samples "
        "WHERE gpu_id = ? GROUP BY 1",
        (gpu_id,),
    ).fetchall()
    return {float(row[0]): row[1:] for row in rows}


@pytest.mark.parametrize("level_s", ROLLUP_LEVELS_S)
def test_every_rollup_bucket_equals_the_aggregate_of_its_raw_rows(db_path, level_s):
    conn = _connect(db_path)
    columns = ", ".join(f"{m}_sum, {m}_n, {m}_max" for m in METRIC_NAMES)
    for (gpu_id,) in conn.execute("SELECT gpu_id FROM gpus").fetchall():
        raw = _raw_aggregates(conn, gpu_id, level_s)
        rolled = {
            row[0]: row[1:]
            for row in conn.execute(
                f"SELECT ts, n, {columns} FROM {rollup_table(level_s)} WHERE gpu_id = ?",
                (gpu_id,),
            )
        }
        assert rolled.keys() == raw.keys()
        for bucket_ts, values in raw.items():
            assert _same(rolled[bucket_ts], values), bucket_ts


def _same(mine: tuple, theirs: tuple) -> bool:
    """Return whether two rows agree: NULL for NULL, numbers equal up to float rounding."""
    return len(mine) == len(theirs) and all(
        (a is None and b is None)
        or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-9))
        for a, b in zip(mine, theirs, strict=True)
    )


def test_history_from_rollups_equals_history_from_raw_rows(db_path):
    conn = _connect(db_path)
    low_s, high_s = START_TS - 3600, START_TS + 8 * 3600
    for step_s in (60, 120, 300, 600, 900, 1200, 1800, 3600, 7200, 10800):
        level_s = rollup_level(step_s, INTERVAL_S)
        assert level_s is not None and step_s % level_s == 0
        last_bucket = int(high_s // step_s)
        for (gpu_id,) in conn.execute("SELECT gpu_id FROM gpus").fetchall():
            params = (step_s, last_bucket, gpu_id, low_s, high_s)
            raw = conn.execute(history_sql(METRIC_NAMES), params).fetchall()
            rolled = conn.execute(history_sql(METRIC_NAMES, level_s), params).fetchall()
            assert len(rolled) == len(raw) > 0
            for mine, theirs in zip(rolled, raw, strict=True):
                assert mine[:2] == theirs[:2]  # bucket and count
                assert _same(mine[2:], theirs[2:])


def test_the_level_is_the_coarsest_that_tiles_the_step_and_is_kept():
    assert rollup_levels_for(60) == (600, 1800, 3600, 7200)
    assert rollup_levels_for(10) == (60, 300, 600, 1800, 3600, 7200)
    assert rollup_levels_for(30) == (60, 300, 600, 1800, 3600, 7200)
    assert rollup_levels_for(45) == (60, 600, 1800, 3600, 7200)  # 300 s only at <= 30 s
    assert rollup_level(300, 10) == 300  # a 24-hour chart of a 10 s GPU: one look-up a bucket
    assert rollup_level(300, 45) == 60
    assert rollup_level(7200, 60) == 7200
    assert rollup_level(10800, 60) == 3600  # 7200 does not tile 10800 s buckets
    assert rollup_level(1800, 60) == 1800
    assert rollup_level(1200, 60) == 600
    assert rollup_level(900, 10) == 300  # 600 does not tile 900 s buckets; 300 does
    assert rollup_level(300, 60) is None  # no level finer than 600 s is kept at 60 s
    assert rollup_level(30, 10) is None
    assert rollup_level(3600, None) is None


@pytest.mark.parametrize("level_s", [None, *ROLLUP_LEVELS_S])
@pytest.mark.parametrize("grouped", [True, False])
@pytest.mark.parametrize("make_sql", [history_json_sql, columns_sql])
def test_history_query_is_a_key_range_search(db_path, level_s, grouped, make_sql):
    conn = _connect(db_path)
    step_s = (level_s or 60) * (2 if grouped else 1)
    sql = make_sql(METRIC_NAMES, level_s, step_s)  # what the web runs (rows, columns)
    plan = " ".join(
        row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, (step_s, 10, 1, 0, 1e10, 0))
    )
    table = "samples" if level_s is None else rollup_table(level_s)
    if level_s is not None and not grouped:  # one key look-up per bucket
        assert "SEARCH b USING PRIMARY KEY (gpu_id=? AND ts=?)" in plan
    else:  # one key range, then an index on the buckets for the join
        assert f"SEARCH {table} USING PRIMARY KEY (gpu_id=? AND ts>? AND ts<?)" in plan
        assert "SEARCH b USING AUTOMATIC COVERING INDEX (bucket=?)" in plan
    assert f"SCAN {table}" not in plan


def test_version_10_fills_the_300_s_level_of_an_older_file_exactly(db_path, tmp_path):
    """A file written before the 300 s level gets it from its 60 s level: the same rows the
    writer keeps now (which the test above checks against the raw readings)."""
    columns = ", ".join(f"{m}_sum, {m}_n, {m}_max" for m in METRIC_NAMES)
    query = f"SELECT gpu_id, ts, n, {columns} FROM rollup_300 ORDER BY gpu_id, ts"
    kept = _connect(db_path).execute(query).fetchall()
    old = tmp_path / "old.db"
    source = _connect(db_path)
    source.backup(copy := sqlite3.connect(old))
    source.close()
    copy.execute("DROP TABLE rollup_300")
    copy.executescript(MIGRATIONS[9])  # version 10, run on a file as version 9 left it
    migrated = copy.execute(query).fetchall()
    copy.close()
    assert len(migrated) == len(kept) > 0
    for mine, theirs in zip(migrated, kept, strict=True):
        assert mine[:3] == theirs[:3]
        assert _same(mine[3:], theirs[3:])
