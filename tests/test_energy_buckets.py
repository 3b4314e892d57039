"""Energy from buckets is the walk over every reading: random files, random ranges.

The writer keeps per-GPU energy buckets (services/writer/energy_buckets.py) and /api/v1/energy
sums whole buckets and walks only its range's edges (services/web/energy_reads.energy_job). Its
answer must be the full walk's (full_walk_job, what /api/v1/energy did before the buckets) on
any history: gaps of seconds to days, counters that reset or are missing, power-only GPUs, error
ticks and outages, batches written out of order (a replay), an interval that changes, a purge,
and buckets filled by the version-11 migration from an existing file instead of by the writer.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.messages import GpuReading, Tick
from common.schema import _V11, ENERGY_BUCKET_LEVELS_S, _statements, bucket_start
from services.web.energy import GpuEnergy
from services.web.energy_reads import energy_job, full_walk_job, plan_range
from services.writer.store import Store

T0 = 1_700_006_400.0  # a whole day, so every level's bucket starts here
STEPS_S = (10.0, 10.0, 10.0, 10.0, 20.0, 25.0, 30.0, 290.0, 3600.0, 7200.0, 86400.0, 100_000.0)

# One GPU's reading at one tick: ("error", None, None) or ("ok", energy_j or None, power_w or None)
_ERROR = st.just(("error", None, None))
_POWER_W = st.one_of(st.none(), st.floats(0, 700, allow_nan=False))
# a counter, now and then missing (or reset: a draw below the last value)
counter_readings = st.one_of(
    _ERROR,
    *[st.tuples(st.just("ok"), st.floats(0, 5e6, allow_nan=False), _POWER_W)] * 4,
    st.tuples(st.just("ok"), st.none(), _POWER_W),
)
# power only, now and then a counter
power_readings = st.one_of(
    _ERROR,
    *[st.tuples(st.just("ok"), st.none(), _POWER_W)] * 4,
    st.tuples(st.just("ok"), st.floats(0, 5e6, allow_nan=False), _POWER_W),
)


@st.composite
def histories(draw: st.DrawFn) -> dict:
    """Ticks of two GPUs (one with a counter that may reset, one power-only at times), split
    into batches written in a random order, each batch with its own interval."""
    count = draw(st.integers(2, 45))
    offset_s = draw(st.sampled_from([0.0, 0.5, 299.9, 1e-6, 3599.25]))
    steps = draw(st.lists(st.sampled_from(STEPS_S), min_size=count, max_size=count))
    jitter = draw(st.lists(st.floats(0, 0.9), min_size=count, max_size=count))
    ticks_ts = []
    ts = T0 + offset_s
    for step_s, extra_s in zip(steps, jitter, strict=True):
        ts += step_s + extra_s
        ticks_ts.append(ts)
    gpus = {
        uuid: draw(st.lists(kind, min_size=count, max_size=count))
        for uuid, kind in (("GPU-a", counter_readings), ("GPU-b", power_readings))
    }
    cuts = sorted(draw(st.sets(st.integers(1, count - 1), max_size=4)))
    bounds = list(zip([0, *cuts], [*cuts, count], strict=True))
    order = draw(st.permutations(range(len(bounds))))
    intervals = draw(
        st.lists(st.sampled_from([10.0, 10.0, 15.0]), min_size=len(bounds), max_size=len(bounds))
    )
    purge_at = draw(
        st.one_of(st.none(), st.none(), st.none(), st.sampled_from(ticks_ts), st.floats(T0, ts + 1))
    )
    return {
        "ticks_ts": ticks_ts,
        "gpus": gpus,
        "batches": [(bounds[i], intervals[i]) for i in order],
        "purge_at": purge_at,
    }


def _reading(uuid: str, index: int, drawn: tuple) -> GpuReading:
    kind, energy_j, power_w = drawn
    if kind == "error":
        return GpuReading(index=index, uuid=uuid, name="H100", error="GPU is lost")
    return GpuReading(index=index, uuid=uuid, name="H100", energy_j=energy_j, power_w=power_w)


def write_history(path: Path, history: dict) -> None:
    store = Store(path)
    try:
        for (first, end), interval_s in history["batches"]:
            store.write(
                [
                    Tick(
                        host="h",
                        sampler_id="s",
                        seq=k,
                        ts=history["ticks_ts"][k],
                        interval_s=interval_s,
                        gpus=[
                            _reading(uuid, index, history["gpus"][uuid][k])
                            for index, uuid in enumerate(history["gpus"])
                        ],
                    )
                    for k in range(first, end)
                ]
            )
        if history["purge_at"] is not None:
            store.purge(history["purge_at"])
    finally:
        store.close()


def answer(conn: sqlite3.Connection, job) -> dict[str, GpuEnergy]:  # type: ignore[no-untyped-def]
    conn.execute("BEGIN")
    try:
        return {gpu.gpu_uuid: gpu for gpu in job(conn)}
    finally:
        conn.execute("COMMIT")


def assert_same(buckets: dict[str, GpuEnergy], walked: dict[str, GpuEnergy]) -> None:
    assert buckets.keys() == walked.keys()
    for uuid, gpu in walked.items():
        got = buckets[uuid]
        assert (got.counter_pairs, got.power_pairs) == (gpu.counter_pairs, gpu.power_pairs), uuid
        assert got.counter_j == pytest.approx(gpu.counter_j, rel=1e-12, abs=1e-6), uuid
        assert got.power_j == pytest.approx(gpu.power_j, rel=1e-12, abs=1e-6), uuid
        assert (got.source, got.kwh is None) == (gpu.source, gpu.kwh is None), uuid


def ranges_of(history: dict, picks: list[tuple[int, int, float, float]]) -> list[tuple]:
    """Range edges at readings, between them, and outside the history, from drawn picks."""
    stamps = history["ticks_ts"]
    out = []
    for a, b, shift_a, shift_b in picks:
        lo = stamps[a % len(stamps)] + shift_a
        hi = stamps[b % len(stamps)] + shift_b
        out.append((min(lo, hi), max(lo, hi) + (1.0 if lo == hi else 0.0)))
    out.append((0.0, stamps[-1] + 1e9))  # everything
    return out


picks = st.lists(
    st.tuples(
        st.integers(0, 60),
        st.integers(0, 60),
        st.sampled_from([0.0, -1e-6, 1e-6, -5.0, 150.0, -86400.0, 3600.0]),
        st.sampled_from([0.0, 1e-6, -1e-6, 5.0, 86400.0 * 3]),
    ),
    min_size=1,
    max_size=8,
)


def assert_buckets_answer_as_the_walk(conn: sqlite3.Connection, history, chosen) -> None:
    """Each chosen range of the history: the buckets' answer is the full walk's."""
    for from_s, to_s in ranges_of(history, chosen):
        assert_same(
            answer(conn, energy_job(from_s, to_s, ())),
            answer(conn, full_walk_job(from_s, to_s, ())),
        )


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), chosen=picks)
def test_bucket_answers_equal_the_full_walk(tmp_path_factory, history, chosen):
    path = tmp_path_factory.mktemp("energy") / "gpu_stats.db"
    write_history(path, history)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        assert_buckets_answer_as_the_walk(conn, history, chosen)
    finally:
        conn.close()


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), chosen=picks)
def test_buckets_the_migration_fills_answer_as_the_walk(tmp_path_factory, history, chosen):
    """A file from before version 11 gets its buckets from the migration's own SQL."""
    path = tmp_path_factory.mktemp("energy") / "gpu_stats.db"
    write_history(path, history)
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("DROP TABLE energy_buckets")
        for statement in _statements(_V11):
            conn.execute(statement)
        assert_buckets_answer_as_the_walk(conn, history, chosen)
    finally:
        conn.close()


def test_the_writer_keeps_a_bucket_per_level_for_each_gpu_and_reading(tmp_path):
    """An hour of 10 s readings, then one after a 910 s gap: thirteen 300 s buckets, two hours,
    one day per GPU; across the gap the counter counts and power does not."""
    ticks_ts = [T0 + 10 * k for k in range(360)] + [T0 + 3600 + 900]
    history = {
        "ticks_ts": ticks_ts,
        "gpus": {
            "GPU-a": [("ok", 1000.0 * k, 300.0) for k in range(360)] + [("ok", 999_999.0, 1.0)],
            "GPU-b": [("ok", None, 200.0)] * 361,
        },
        "batches": [((0, 361), 10.0)],
        "purge_at": None,
    }
    path = tmp_path / "gpu_stats.db"
    write_history(path, history)
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT level_s, count(*), sum(counter_pairs), sum(power_pairs), total(counter_j),"
        " total(power_j) FROM energy_buckets GROUP BY level_s ORDER BY level_s"
    ).fetchall()
    conn.close()
    assert rows == [
        (300, 26, 360, 359, 1000.0 * 359 + (999_999.0 - 359_000.0), 200.0 * 10 * 359),
        (3600, 4, 360, 359, 1000.0 * 359 + (999_999.0 - 359_000.0), 200.0 * 10 * 359),
        (86400, 2, 360, 359, 1000.0 * 359 + (999_999.0 - 359_000.0), 200.0 * 10 * 359),
    ]


@pytest.mark.parametrize(
    ("from_s", "to_s"),
    [
        (T0, T0 + 86400 * 30),
        (T0 + 0.5, T0 + 86400 * 30 - 0.5),
        (T0 + 123.4, T0 + 299.0),
        (T0 - 7 * 86400 + 1234.5, T0 + 1e-6),
        (1e9 + 0.1, 1e9 + 0.2),
    ],
)
def test_a_range_is_cut_into_whole_buckets_and_short_edges_that_tile_it(from_s, to_s):
    segments, edges = plan_range(from_s, to_s)
    pieces = sorted([(first, end) for _, first, end in segments] + edges)
    assert pieces[0][0] == from_s and pieces[-1][1] == to_s
    assert all(a[1] == b[0] for a, b in itertools.pairwise(pieces))
    assert all(hi - lo < ENERGY_BUCKET_LEVELS_S[0] for lo, hi in edges) and len(edges) <= 2
    for level_s, first, end in segments:
        assert first % level_s == 0 and end % level_s == 0 and first < end


@given(st.floats(1e8, 4e9, allow_nan=False), st.sampled_from(ENERGY_BUCKET_LEVELS_S))
def test_a_reading_falls_in_the_bucket_sqlite_compares_it_into(ts, level_s):
    start = bucket_start(ts, level_s)
    assert start <= ts < start + level_s
    assert start == math.floor(start) and start % level_s == 0
