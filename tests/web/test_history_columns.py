"""The columns answer of /api/v1/history is the rows answer, bucket for bucket, rounded.

On a file the writer itself filled (services.writer.store.Store, as the bench generator does):
GPUs sampled every 10 s (every rollup level, the 300 s one included), 45 s (no 300 s level) and
60 s (no 60 s level either), with an outage (a gap of buckets), GPUs in error (readings that
count but carry no value) and a metric null on every card but one (the fan). Each range and
point count makes the server read another level or the raw rows.
"""

from __future__ import annotations

import math
import sqlite3

import msgspec
import pytest

from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES, METRICS
from services.web.app import create_app
from services.web.history_cache import HISTORY_CACHE
from services.writer.store import Store
from tests.bench.generate import fast_host_ticks
from tests.web.conftest import make_config, write_hosts

HOUR_S = 3600
SPAN_S = 26 * HOUR_S
END_TS = 1_790_006_400.0  # a multiple of 7200: the coarsest buckets start on it
FIRST_TS = END_TS - SPAN_S
OUTAGE = (FIRST_TS + 5 * HOUR_S + 17, FIRST_TS + 6 * HOUR_S + 3)  # no reading at all
INTERVALS_S = {"fast": 10.0, "mid": 45.0, "slow": 60.0}
WHOLE = {metric.name: metric.sql_type == "INTEGER" for metric in METRICS}


def _in_error(tick: Tick, seq: int) -> Tick:
    """Every 7th tick, its first GPU in error: a reading that counts, with no metric."""
    if seq % 7:
        return tick
    first = tick.gpus[0]
    lost = GpuReading(first.index, first.uuid, first.name, first.pci_bus_id, "GPU is lost")
    return msgspec.structs.replace(tick, gpus=[lost, *tick.gpus[1:]])


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("columns") / "gpu_stats.db"
    return write_hosts(path, INTERVALS_S, FIRST_TS, SPAN_S, OUTAGE, _in_error)


async def _get(client, params: list[tuple[str, str]]) -> dict:
    response = await client.get("/api/v1/history", params=params)
    assert response.status == 200, await response.text()
    return await response.json()


def _same_mean(column_value, row_value, name: str) -> bool:
    """Return whether a column's rounded mean is the row's 15-digit mean, rounded."""
    if row_value is None or column_value is None:
        return row_value is None and column_value is None
    if WHOLE[name]:
        return isinstance(column_value, int) and column_value == math.floor(row_value + 0.5)
    return abs(column_value - row_value) <= 0.005 + 1e-9 * abs(row_value)


# (hours before END_TS, hours long, points): raw rows (1 h in 500: 10 s), the 60 s level, the
# 300 s level looked up (24 h in 500), grouped 300 s buckets (900 s), the 7200 s level, and
# ranges that start inside the outage, before the first reading or reach past the last one
# (gaps at either end, which the one-scan read adds itself).
WINDOWS = [
    (1, 1, 500),
    (3, 2, 120),
    (24, 24, 500),
    (26, 26, 100),
    (21, 2, 8),
    (26, 26, 13),
    (2, 4, 37),
    (27, 24, 500),
    (28, 30, 100),
]


@pytest.mark.parametrize(("before_h", "hours", "points"), WINDOWS)
async def test_columns_equal_rows_bucket_for_bucket(
    aiohttp_client, written, before_h, hours, points
):
    client = await aiohttp_client(create_app(make_config(written)))
    window = [
        ("from", repr(END_TS - before_h * HOUR_S)),
        ("to", repr(END_TS - (before_h - hours) * HOUR_S)),
        ("points", str(points)),
        *(("metric", name) for name in METRIC_NAMES),
    ]
    columns = await _get(client, window)
    rows = await _get(client, [*window, ("shape", "rows")])

    assert (columns["from"], columns["to"], columns["step_s"]) == (
        rows["from"],
        rows["to"],
        rows["step_s"],
    )
    assert [s["gpu_uuid"] for s in columns["series"]] == [s["gpu_uuid"] for s in rows["series"]]
    assert len(columns["series"]) == 2 * len(INTERVALS_S)
    gaps = values = 0
    for mine, theirs in zip(columns["series"], rows["series"], strict=True):
        buckets = theirs["buckets"]
        assert columns["ts"] == [bucket["ts"] for bucket in buckets]
        assert mine["count"] == [bucket["count"] for bucket in buckets]
        for k, bucket in enumerate(buckets):
            if bucket["mean"] is None:  # a gap: null in every column
                gaps += 1
                assert all(
                    mine[stat][name][k] is None for stat in ("mean", "max") for name in METRIC_NAMES
                )
                continue
            for name in METRIC_NAMES:
                values += bucket["mean"][name] is not None
                assert _same_mean(mine["mean"][name][k], bucket["mean"][name], name), (k, name)
                assert mine["max"][name][k] == bucket["max"][name], (k, name)
    assert values > 0  # the comparison compared something


async def test_the_outage_is_a_gap_in_every_column(aiohttp_client, written):
    client = await aiohttp_client(create_app(make_config(written)))
    body = await _get(
        client,
        [("from", repr(OUTAGE[0] - 1800)), ("to", repr(OUTAGE[1] + 1800)), ("points", "30")],
    )
    assert body["step_s"] == 300
    inside = [k for k, ts in enumerate(body["ts"]) if ts >= OUTAGE[0] and ts + 300 <= OUTAGE[1]]
    assert len(inside) >= 9
    for series in body["series"]:
        assert all(series["count"][k] == 0 for k in inside)
        assert all(series["mean"]["util_gpu_pct"][k] is None for k in inside)
        assert any(count > 0 for count in series["count"])  # readings on both sides


async def test_a_fast_gpus_24_hours_have_the_means_of_its_raw_rows(aiohttp_client, written):
    """The 24-hour chart of a 10 s GPU (300 s buckets: the 300 s level's rows, looked up by key,
    tests/test_rollups.py) against the raw rows of the file, grouped by hand."""
    client = await aiohttp_client(create_app(make_config(written)))
    body = await _get(
        client,
        [
            ("from", repr(END_TS - 24 * HOUR_S)),
            ("to", repr(END_TS)),
            ("host", "fast"),
            ("metric", "power_w"),
            ("metric", "temp_c"),
        ],
    )
    assert body["step_s"] == 300
    conn = sqlite3.connect(f"file:{written}?mode=ro", uri=True)
    try:
        for series in body["series"]:
            raw = {
                int(bucket): (count, power, temp)
                for bucket, count, power, temp in conn.execute(
                    "SELECT CAST(s.ts / 300 AS INTEGER) * 300, count(*), avg(power_w), avg(temp_c)"
                    " FROM samples AS s JOIN gpus AS g USING (gpu_id) WHERE g.gpu_uuid = ?"
                    " AND s.ts >= ? AND s.ts < ? GROUP BY 1",
                    (series["gpu_uuid"], END_TS - 24 * HOUR_S, END_TS),
                )
            }
            for k, ts in enumerate(body["ts"]):
                count, power, temp = raw.get(ts, (0, None, None))
                assert series["count"][k] == count
                assert _same_mean(series["mean"]["power_w"][k], power, "power_w")
                assert _same_mean(series["mean"]["temp_c"][k], temp, "temp_c")
    finally:
        conn.close()


# -- the cache of closed buckets -----------------------------------------------------------------


def _fresh_ticks(first_ts: float, count: int, seq0: int = 0) -> list[Tick]:
    ticks = fast_host_ticks("live", 2, first_ts, count, 10.0, 9)
    return [msgspec.structs.replace(tick, seq=seq0 + seq) for seq, tick in enumerate(ticks)]


async def _columns(client, from_s: float, to_s: float, points: int) -> dict:
    return await _get(
        client,
        [("from", repr(from_s)), ("to", repr(to_s)), ("points", str(points)), ("host", "live")],
    )


@pytest.mark.parametrize(("hours", "points"), [(1, 500), (6, 500), (24, 500), (26, 13)])
async def test_the_cache_answers_what_a_fresh_read_answers_as_readings_arrive(
    aiohttp_client, tmp_path, hours, points
):
    """Readings arriving in the open bucket, after it, and late into a closed bucket (a replay):
    each answer of the app that caches equals that of an app that has cached nothing."""
    path = tmp_path / "gpu_stats.db"
    start_ts = END_TS - SPAN_S
    store = Store(path)
    first = _fresh_ticks(start_ts, int((SPAN_S - 3 * HOUR_S) / 10))
    late_ts = first[len(first) // 2].ts + 5  # between two stored readings, in a closed bucket
    store.write([tick for tick in first if tick.ts != first[len(first) // 2].ts])
    cached = await aiohttp_client(create_app(make_config(path)))
    from_s, to_s = END_TS - 3 * HOUR_S - hours * HOUR_S, END_TS - 3 * HOUR_S + 1800

    async def same_as_fresh() -> dict:
        fresh = await aiohttp_client(create_app(make_config(path, PCW_HISTORY_CACHE_BYTES="0")))
        mine = await _columns(cached, from_s, to_s, points)
        assert mine == await _columns(fresh, from_s, to_s, points)
        return mine

    await same_as_fresh()  # fills the cache
    next_seq = len(first)
    for extra in (1, 2, 25, 90):  # a reading or two in the open bucket, then into new buckets
        more = _fresh_ticks(first[-1].ts + 10, extra, next_seq)
        store.write(more)
        first += more
        next_seq += extra
        await same_as_fresh()
    lost = _fresh_ticks(late_ts - 5, 1, next_seq)[0]
    store.write([msgspec.structs.replace(lost, ts=late_ts)])  # a replayed, late reading
    answer = await same_as_fresh()
    store.close()
    held = cached.app[HISTORY_CACHE]
    assert held.hits >= 5 and 0 < held.held_bytes <= held.max_bytes
    assert sum(answer["series"][0]["count"]) > 0


async def test_the_cache_stays_within_its_bytes(aiohttp_client, written):
    client = await aiohttp_client(create_app(make_config(written, PCW_HISTORY_CACHE_BYTES="20000")))
    for hours in (1, 2, 6, 24, 26):
        await _get(client, [("from", repr(END_TS - hours * HOUR_S)), ("to", repr(END_TS))])
        held = client.app[HISTORY_CACHE]
        assert held.held_bytes <= 20000
