"""Bucket width and alignment: never more buckets than asked, always covering the range."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from services.web.buckets import (
    DAY_S,
    STEP_LADDER_S,
    bucket_span,
    choose_step_s,
    empty_buckets,
    empty_columns,
)
from services.web.history_reads import columns_sql, history_json_sql
from services.web.params import MAX_EPOCH_S, MAX_POINTS
from tests.web.conftest import add_gpu, add_sample, create_db

epochs = st.floats(min_value=0, max_value=MAX_EPOCH_S, allow_nan=False)


@settings(max_examples=300)
@given(epochs, epochs, st.integers(min_value=1, max_value=MAX_POINTS))
def test_step_gives_at_most_points_buckets_covering_the_range(a, b, points):
    from_s, to_s = min(a, b), max(a, b)
    if from_s == to_s:
        to_s = math.nextafter(to_s, math.inf)
    step_s = choose_step_s(from_s, to_s, points)
    first, count = bucket_span(from_s, to_s, step_s)
    assert 1 <= count <= points
    assert first * step_s <= from_s
    assert (first + count) * step_s >= to_s
    if step_s <= DAY_S:
        # on the ladder the smallest width that fits: the next smaller one gives too many
        smaller = [s for s in STEP_LADDER_S if s < step_s]
        if smaller:
            assert bucket_span(from_s, to_s, smaller[-1])[1] > points
    else:
        assert step_s % DAY_S == 0
        if points > 1:
            assert step_s <= 2 * (to_s - from_s) / points + 65 * DAY_S


def test_alignment_adds_a_bucket_so_a_wider_step_is_chosen():
    t0 = 1_699_999_980.0  # a multiple of 60
    assert choose_step_s(t0, t0 + 300, 5) == 60
    # 300 s over 5 points but not aligned to 60 s: 6 buckets of 60 s, so 120 s
    assert bucket_span(t0 + 30, t0 + 330, 60) == (28_333_333, 6)
    assert choose_step_s(t0 + 30, t0 + 330, 5) == 120


def test_ranges_beyond_the_ladder_use_whole_days():
    step_s = choose_step_s(0, 400 * DAY_S, 100)
    assert step_s % DAY_S == 0 and step_s >= 4 * DAY_S
    assert bucket_span(0, 400 * DAY_S, step_s)[1] <= 100
    assert choose_step_s(10.0, 10.5, 1) == 1
    assert choose_step_s(59.0, 61.0, 1) == 120  # one bucket must hold both sides of 60
    # the far end of what the API takes: answered in bounded time, still within points
    for points in (1, 2, 3, MAX_POINTS):
        step_s = choose_step_s(30_885_484_713.8, 69_121_057_358.0, points)
        assert bucket_span(30_885_484_713.8, 69_121_057_358.0, step_s)[1] <= points


def test_history_json_marks_gaps_and_keeps_order(tmp_path):
    conn = create_db(tmp_path / "gpu_stats.db")
    add_gpu(conn, 1, "GPU-a", "h", 0, 600.0, 779.0)
    add_sample(conn, 1, 600.0, util_gpu_pct=1)  # bucket 10: util 1 and 2, no fan
    add_sample(conn, 1, 630.0, util_gpu_pct=2)
    add_sample(conn, 1, 720.0, util_gpu_pct=0, fan_pct=7)  # bucket 12; 11 and 13 are gaps
    sql = history_json_sql(("util_gpu_pct", "fan_pct"), None, 60)
    buckets = json.loads(conn.execute(sql, (60, 13, 1, 600.0, 840.0, 10)).fetchone()[0])
    assert [b["ts"] for b in buckets] == [600, 660, 720, 780]
    assert buckets[0] == {
        "ts": 600,
        "count": 2,
        "mean": {"util_gpu_pct": 1.5, "fan_pct": None},
        "max": {"util_gpu_pct": 2, "fan_pct": None},
    }
    assert buckets[1] == {"ts": 660, "count": 0, "mean": None, "max": None}
    assert buckets[2]["mean"] == {"util_gpu_pct": 0.0, "fan_pct": 7.0}
    assert buckets[3]["count"] == 0
    assert [b for b in buckets if b["count"] == 0] == [
        e for e in empty_buckets(10, 4, 60) if e["ts"] in (660, 780)
    ]


def test_history_columns_mark_gaps_keep_order_and_round(tmp_path):
    conn = create_db(tmp_path / "gpu_stats.db")
    add_gpu(conn, 1, "GPU-a", "h", 0, 600.0, 779.0)
    add_sample(conn, 1, 600.0, util_gpu_pct=1, power_w=100.004)  # bucket 10: util 1 and 2
    add_sample(conn, 1, 630.0, util_gpu_pct=2, power_w=100.0)
    add_sample(conn, 1, 720.0, util_gpu_pct=0, fan_pct=7)  # bucket 12; 11 and 13 are gaps
    sql = columns_sql(("util_gpu_pct", "fan_pct", "power_w"), None, 60)
    counts, means, maxima = conn.execute(sql, (60, 13, 1, 600.0, 840.0, 10)).fetchone()
    assert json.loads(counts) == [2, 0, 1, 0]
    assert json.loads(means) == {
        "util_gpu_pct": [2, None, 0, None],  # 1.5 rounds half away from zero
        "fan_pct": [None, None, 7, None],
        "power_w": [100.0, None, None, None],  # 100.002 to the hundredth
    }
    assert json.loads(maxima) == {
        "util_gpu_pct": [2, None, 0, None],
        "fan_pct": [None, None, 7, None],
        "power_w": [100.004, None, None, None],
    }
    zeros, nulls = empty_columns(("util_gpu_pct", "fan_pct"), 4)
    assert zeros == [0] * 4 and nulls == {"util_gpu_pct": [None] * 4, "fan_pct": [None] * 4}
