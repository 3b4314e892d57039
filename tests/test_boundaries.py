"""Boundaries that the commonest cases sit on: one missed tick in energy, a hub batch of hosts.

Every expected value is worked out by hand in the comments, from the ticks written.
"""

from __future__ import annotations

import math
import sqlite3
from pathlib import Path

import pytest

from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from common.schema import ROLLUP_LEVELS_S, rollup_table
from services.web.app import create_app
from services.web.energy import GpuEnergy, energy_report, integrate
from services.writer.rollups import RAW, purge, refresh, refresh_sql, refresh_times
from services.writer.store import Store
from tests.web.conftest import make_config

T0 = 1_700_000_040.0  # a multiple of 60
INTERVAL_S = 60.0
J_PER_KWH = 3.6e6


def write(path: Path, ticks: list[Tick]) -> None:
    store = Store(path)
    store.write(ticks)
    store.close()


# -- energy: one missed tick is a gap of exactly two intervals, and power still counts ------------
# P1 (power only), readings at k = 0, 1, 3 (tick 2 missed), 5.0167 (2 intervals and 1 s later),
# 8 (3 intervals later), power 100, 200, 300, 500, 700 W:
#   0 -> 1: (100 + 200) / 2 x 60 = 9000 J
#   1 -> 3: 120 s = 2 intervals, counted: (200 + 300) / 2 x 120 = 30000 J
#   3 -> 5.0167: 121 s, over 2 intervals: not counted
#   5.0167 -> 8: over 2 intervals: not counted
# -> 39000 J
POWER_KS = (0.0, 1.0, 3.0, 5.0 + 1 / 60, 8.0)
POWER_W = (100.0, 200.0, 300.0, 500.0, 700.0)
POWER_J = 39000.0


def energy_ticks() -> list[Tick]:
    return [
        Tick(
            host="alpha",
            sampler_id="alpha-run",
            seq=int(k),
            ts=T0 + k * INTERVAL_S,
            interval_s=INTERVAL_S,
            gpus=[GpuReading(index=0, uuid="P1", name="L4", power_w=power_w)],
        )
        for k, power_w in zip(POWER_KS, POWER_W, strict=True)
    ]


def test_one_missed_tick_still_counts_power_energy_in_the_view(tmp_path):
    path = tmp_path / "gpu_stats.db"
    write(path, energy_ticks())
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT ts, delta_j, source FROM energy WHERE gpu_uuid = 'P1' ORDER BY ts"
    ).fetchall()
    conn.close()
    assert [row[0] for row in rows] == [T0 + k * INTERVAL_S for k in POWER_KS]
    assert [row[1] for row in rows] == [None, 9000.0, 30000.0, None, None]
    assert [row[2] for row in rows] == [None, "power", "power", None, None]


def test_one_missed_tick_still_counts_power_energy_in_python():
    readings = [
        (T0 + k * INTERVAL_S, None, power_w, None)
        for k, power_w in zip(POWER_KS, POWER_W, strict=True)
    ]
    sums = integrate(readings, INTERVAL_S)
    assert (sums.power_j, sums.power_pairs) == (POWER_J, 2)
    assert (sums.counter_j, sums.counter_pairs) == (0.0, 0)


async def test_one_missed_tick_still_counts_power_energy_in_the_api(aiohttp_client, tmp_path):
    path = tmp_path / "gpu_stats.db"
    write(path, energy_ticks())
    client = await aiohttp_client(create_app(make_config(path)))
    url = f"/api/v1/energy?from={T0}&to={T0 + 9 * INTERVAL_S}"
    response = await client.get(url)
    assert response.status == 200, await response.text()
    body = await response.json()
    (gpu,) = body["gpus"]
    assert gpu["source"] == "power"
    assert gpu["kwh"] == pytest.approx(POWER_J / J_PER_KWH, rel=1e-12)
    assert body["total_kwh"] == pytest.approx(POWER_J / J_PER_KWH, rel=1e-12)
    # the range that starts at the missed tick still holds the pair across it
    response = await client.get(f"/api/v1/energy?from={T0 + 2 * INTERVAL_S}&to={T0 + 240}")
    assert (await response.json())["gpus"][0]["kwh"] == pytest.approx(30000.0 / J_PER_KWH)


def test_the_power_energy_of_a_gap_is_the_mean_of_the_known_readings():
    # one side null: the other side's power holds for the pair; both null: nothing
    readings = [
        (0.0, None, 100.0, None),
        (60.0, None, None, None),
        (120.0, None, 300.0, None),
        (180.0, None, None, None),
    ]
    sums = integrate(readings, INTERVAL_S)
    # 0 -> 60: 100 W x 60 = 6000; 60 -> 120: 300 W x 60 = 18000; 120 -> 180: 300 x 60 = 18000
    assert (sums.power_j, sums.power_pairs) == (42000.0, 3)
    assert (
        integrate([(0.0, None, None, None), (60.0, None, None, None)], INTERVAL_S).power_pairs == 0
    )


def test_the_counter_counts_across_any_gap_and_restarts_from_a_reset():
    # 1000 -> 4000 across 10 intervals: 3000; 4000 -> 4000: 0; then a reset to 250: 250
    readings = [
        (0.0, 1000.0, 5.0, None),
        (600.0, 4000.0, None, None),
        (660.0, 4000.0, 1.0, None),
        (720.0, 250.0, 1.0, None),
    ]
    sums = integrate(readings, INTERVAL_S)
    assert (sums.counter_j, sums.counter_pairs) == (3250.0, 3)
    assert (sums.power_j, sums.power_pairs) == (0.0, 0)


# -- rollups: a hub batch holds several hosts' ticks in the same bucket, at every level ----------
HOSTS = ("alpha", "beta", "gamma")
BATCH_T0 = 1_790_006_400.0  # a multiple of 7200: every level's bucket starts here
BATCH_INTERVAL_S = 10.0


def hub_batch(first_k: int, count: int) -> list[Tick]:
    """Return ticks of three hosts interleaved as a hub receives them, two GPUs each."""
    ticks = []
    for k in range(first_k, first_k + count):
        for h, host in enumerate(HOSTS):
            gpus = [
                GpuReading(
                    index=i,
                    uuid=f"GPU-{host}-{i}",
                    name="H100",
                    util_gpu_pct=(7 * k + 13 * h + 29 * i) % 101,
                    mem_used_bytes=(k + 1) * (h + 1) << 20,
                    power_w=100.0 + k + 10 * h + i,
                    temp_c=None if (k + h) % 5 == 0 else 40 + (k + i) % 30,
                )
                for i in range(2)
            ]
            ticks.append(
                Tick(
                    host=host,
                    sampler_id=f"{host}-run",
                    seq=k,
                    ts=BATCH_T0 + k * BATCH_INTERVAL_S,
                    interval_s=BATCH_INTERVAL_S,
                    gpus=gpus,
                )
            )
    return ticks


def naive_buckets(conn: sqlite3.Connection, level_s: int) -> dict[tuple[str, float], tuple]:
    """Aggregate the raw readings per GPU and bucket with a plain GROUP BY, written here."""
    columns = ", ".join(f"sum(s.{m}), count(s.{m}), max(s.{m})" for m in METRIC_NAMES)
    rows = conn.execute(
        f"SELECT g.gpu_uuid, (CAST(s.ts AS INTEGER) / {level_s}) * {level_s}, count(*), "
        f"{columns} FROM samples AS s JOIN gpus AS g ON g.gpu_id = s.gpu_id GROUP BY 1, 2"
    ).fetchall()
    return {(row[0], float(row[1])): row[2:] for row in rows}


def rolled_buckets(conn: sqlite3.Connection, level_s: int) -> dict[tuple[str, float], tuple]:
    columns = ", ".join(f"r.{m}_sum, r.{m}_n, r.{m}_max" for m in METRIC_NAMES)
    rows = conn.execute(
        f"SELECT g.gpu_uuid, r.ts, r.n, {columns} FROM {rollup_table(level_s)} AS r "
        "JOIN gpus AS g ON g.gpu_id = r.gpu_id"
    ).fetchall()
    return {(row[0], float(row[1])): row[2:] for row in rows}


def same(mine: tuple, theirs: tuple) -> bool:
    return len(mine) == len(theirs) and all(
        (a is None and b is None)
        or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12))
        for a, b in zip(mine, theirs, strict=True)
    )


def hub_file(tmp_path: Path) -> sqlite3.Connection:
    """Return a connection (autocommit) to a file the writer filled with 8000 s of hub ticks."""
    path = tmp_path / "gpu_stats.db"
    store = Store(path)
    store.write(hub_batch(0, 800))  # 8000 s of readings, every 10 s: every level's edges
    store.close()
    return sqlite3.connect(path, isolation_level=None)


def assert_rolled_as(conn: sqlite3.Connection, level_s: int, expected: dict) -> None:
    """Assert the level's rollup buckets are exactly `expected` (a plain GROUP BY's answer)."""
    rolled = rolled_buckets(conn, level_s)
    assert rolled.keys() == expected.keys(), level_s
    for key, values in expected.items():
        assert same(rolled[key], values), (level_s, key)


@pytest.mark.parametrize("level_s", ROLLUP_LEVELS_S)
def test_a_batch_of_several_hosts_in_one_bucket_rolls_up_every_host(tmp_path, level_s):
    path = tmp_path / "gpu_stats.db"
    store = Store(path)
    store.write(hub_batch(0, 4))  # 0-30 s: one bucket of every level, for all three hosts
    store.write(hub_batch(4, 2))  # 40-50 s: a second batch into the same buckets
    store.close()
    conn = sqlite3.connect(path)
    naive, rolled = naive_buckets(conn, level_s), rolled_buckets(conn, level_s)
    conn.close()
    expected_keys = {(f"GPU-{host}-{i}", BATCH_T0) for host in HOSTS for i in range(2)}
    assert set(naive) == expected_keys
    assert set(rolled) == expected_keys
    for key, values in naive.items():
        assert values[0] == 6, key  # six readings per GPU
        assert same(rolled[key], values), key


def test_a_batch_of_several_hosts_across_bucket_edges_matches_a_plain_group_by(tmp_path):
    path = tmp_path / "gpu_stats.db"
    store = Store(path)
    ticks = hub_batch(0, 800)  # 8000 s: crosses the edges of every level
    for start in range(0, len(ticks), 151):  # batches that cut buckets and hosts anywhere
        store.write(ticks[start : start + 151])
    store.write(ticks[300:700])  # replayed: must not count twice
    store.close()
    conn = sqlite3.connect(path)
    for level_s in ROLLUP_LEVELS_S:
        assert_rolled_as(conn, level_s, naive_buckets(conn, level_s))
    conn.close()


def test_buckets_recomputed_from_reading_times_match_a_plain_group_by(tmp_path):
    conn = hub_file(tmp_path)
    expected = {level_s: naive_buckets(conn, level_s) for level_s in ROLLUP_LEVELS_S}
    for level_s in ROLLUP_LEVELS_S:
        conn.execute(f"DELETE FROM {rollup_table(level_s)}")
    written = 0
    for (gpu_id,) in conn.execute("SELECT gpu_id FROM gpus").fetchall():
        stamps = [
            ts for (ts,) in conn.execute("SELECT ts FROM samples WHERE gpu_id = ?", (gpu_id,))
        ]
        written += refresh_times(conn, gpu_id, BATCH_INTERVAL_S, stamps)
    assert written == sum(len(buckets) for buckets in expected.values())
    for level_s in ROLLUP_LEVELS_S:
        assert_rolled_as(conn, level_s, expected[level_s])
    conn.close()


@pytest.mark.parametrize("cutoff_k", [1, 6, 7, 250, 361])
def test_a_purge_leaves_every_level_equal_to_the_raw_readings_kept(tmp_path, cutoff_k):
    conn = hub_file(tmp_path)
    cutoff_ts = BATCH_T0 + cutoff_k * BATCH_INTERVAL_S - 5  # between two readings
    for (gpu_id,) in conn.execute("SELECT gpu_id FROM gpus").fetchall():
        conn.execute("DELETE FROM samples WHERE gpu_id = ? AND ts < ?", (gpu_id, cutoff_ts))
        purge(conn, gpu_id, BATCH_INTERVAL_S, cutoff_ts)
    for level_s in ROLLUP_LEVELS_S:
        assert_rolled_as(conn, level_s, naive_buckets(conn, level_s))
    conn.close()


def test_a_purge_of_a_gpu_with_no_interval_deletes_its_old_buckets_and_recomputes_none(tmp_path):
    # a GPU stored before version 3 has no interval, and no levels to recompute
    conn = hub_file(tmp_path)
    cutoff_ts = BATCH_T0 + 361 * BATCH_INTERVAL_S - 5
    (gpu_id, uuid) = conn.execute("SELECT gpu_id, gpu_uuid FROM gpus ORDER BY gpu_id").fetchone()
    before = {level_s: rolled_buckets(conn, level_s) for level_s in ROLLUP_LEVELS_S}
    conn.execute("DELETE FROM samples WHERE gpu_id = ? AND ts < ?", (gpu_id, cutoff_ts))
    purge(conn, gpu_id, None, cutoff_ts)
    for level_s in ROLLUP_LEVELS_S:
        # its buckets that begin before the cutoff go, the one holding the cutoff too (nothing
        # recomputes it); every other bucket, and the other GPUs', stays as it was
        kept = {
            key: values
            for key, values in before[level_s].items()
            if key[0] != uuid or key[1] >= cutoff_ts
        }
        assert len(kept) < len(before[level_s]), level_s
        assert_rolled_as(conn, level_s, kept)
    conn.close()


# -- the statements that recompute a bucket, run on their own ----------------------------------


def test_each_refresh_statement_recomputes_a_bucket_from_the_level_below(tmp_path):
    conn = hub_file(tmp_path)
    expected = {level_s: naive_buckets(conn, level_s) for level_s in ROLLUP_LEVELS_S}
    gpu_ids = dict(conn.execute("SELECT gpu_uuid, gpu_id FROM gpus").fetchall())
    source = RAW
    for level_s in ROLLUP_LEVELS_S:  # finest first, each from the one below
        conn.execute(f"DELETE FROM {rollup_table(level_s)}")
        params = [(gpu_ids[uuid], bucket_ts) for uuid, bucket_ts in expected[level_s]]
        conn.executemany(refresh_sql(level_s, source), params)
        assert_rolled_as(conn, level_s, expected[level_s])
        source = rollup_table(level_s)
    conn.close()


def test_refresh_returns_the_buckets_it_wrote(tmp_path):
    path = tmp_path / "gpu_stats.db"
    store = Store(path)
    ticks = hub_batch(0, 7)  # 0-60 s: two 60 s buckets, one of every coarser level
    store.write(ticks)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    gpu_ids = dict(conn.execute("SELECT gpu_uuid, gpu_id FROM gpus").fetchall())
    # 6 GPUs x (2 buckets of 60 s + 1 of each of the 5 coarser levels, 300 s included)
    assert refresh(conn, ticks, gpu_ids) == 6 * (2 + 5)
    assert refresh(conn, ticks[:3], gpu_ids) == 6 * 6  # one tick of each host: one bucket each
    conn.close()


# -- the energy answer, every field --------------------------------------------------------------


def test_the_energy_answer_by_hand():
    gpus = [
        GpuEnergy("beta", "B0", 0, "L4", 0.0, 0, 0.0, 0),  # nothing could say
        GpuEnergy("alpha", "A1", 1, "H100", 3.6e6, 4, 0.0, 0),  # 1 kWh from the counter
        GpuEnergy("alpha", "A0", 0, "H100", 1.8e6, 1, 1.8e6, 2),  # 1 kWh, mixed
        GpuEnergy("gamma", "C0", 0, "T4", 0.0, 0, 7.2e5, 3),  # 0.2 kWh from power
    ]
    assert energy_report(gpus, 100.0, 200.0, 0.25, "EUR") == {
        "from": 100.0,
        "to": 200.0,
        "price_per_kwh": 0.25,
        "currency": "EUR",
        "gpus": [
            {
                "host": "alpha",
                "gpu_uuid": "A0",
                "gpu_index": 0,
                "gpu_name": "H100",
                "kwh": 1.0,
                "source": "mixed",
                "cost": 0.25,
            },
            {
                "host": "alpha",
                "gpu_uuid": "A1",
                "gpu_index": 1,
                "gpu_name": "H100",
                "kwh": 1.0,
                "source": "counter",
                "cost": 0.25,
            },
            {
                "host": "beta",
                "gpu_uuid": "B0",
                "gpu_index": 0,
                "gpu_name": "L4",
                "kwh": None,
                "source": "none",
                "cost": None,
            },
            {
                "host": "gamma",
                "gpu_uuid": "C0",
                "gpu_index": 0,
                "gpu_name": "T4",
                "kwh": 0.2,
                "source": "power",
                "cost": 0.05,
            },
        ],
        "hosts": [
            {"host": "alpha", "kwh": 2.0, "cost": 0.5},
            {"host": "beta", "kwh": None, "cost": None},  # not 0: nothing could say
            {"host": "gamma", "kwh": 0.2, "cost": 0.05},
        ],
        "total_kwh": 2.2,
        "total_cost": 0.55,
    }


def test_an_energy_answer_where_nothing_could_say_is_null_not_zero():
    gpus = [GpuEnergy("a", "X", 0, "T4", 0.0, 0, 0.0, 0)]
    body = energy_report(gpus, 0.0, 1.0, None, "")
    assert (body["total_kwh"], body["total_cost"], body["hosts"][0]["kwh"]) == (None, None, None)
    assert energy_report([], 0.0, 1.0, 1.0, "EUR")["total_kwh"] is None
