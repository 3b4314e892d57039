"""Counting a GPU's health counters over a range from its stored rows (pure)."""

from __future__ import annotations

import pytest

from common.schema import HEALTH_STATE_COLUMNS
from services.web.health_events import Counter, HealthRow


def row(ts: float, **values: int | None) -> HealthRow:
    return HealthRow(
        ts, [values.get(name, 0 if name == "findings" else None) for name in HEALTH_STATE_COLUMNS]
    )


def test_a_counter_that_resets_counts_what_it_counted_after_the_reset():
    # a GPU without aggregate counters: the volatile ones restart at each driver reload
    counter = Counter()
    for ts, errors in enumerate((1, 3, 0, 1, 1)):  # the first is the state before the range
        counter.take(row(ts, ecc_uncorrected_volatile=errors, pcie_replays=10 + ts))

    counts = counter.counts(xids=0)
    assert counts.ecc_uncorrected == 3  # 2 before the reload, 0 then 1 after it
    assert counts.pcie_replays == 4
    assert counts.ecc_corrected is None  # no row knew it: unknown, not 0
    assert counts.thermal_violation_s is None


def test_the_aggregate_counter_answers_where_the_gpu_keeps_one():
    counter = Counter()
    for ts, (volatile, aggregate) in enumerate(((0, 5), (2, 7), (0, 7))):
        counter.take(
            row(ts, ecc_uncorrected_volatile=volatile, ecc_uncorrected_aggregate=aggregate)
        )

    assert counter.counts(xids=0).ecc_uncorrected == 2


def test_a_row_that_does_not_know_a_counter_neither_adds_nor_breaks_the_count():
    counter = Counter()
    for ts, ns in enumerate((1_000_000_000, None, 4_500_000_000)):
        counter.take(row(ts, thermal_violation_ns=ns))

    assert counter.counts(xids=2).thermal_violation_s == 3.5


def test_a_violation_time_between_sparse_rows_is_shared_by_the_ranges_it_spans():
    # at its power cap the whole time, rows ten minutes apart (the writer's COUNTER_ROW_S)
    def counted(from_s: float, to_s: float) -> float | None:
        counter = Counter(from_s, to_s)
        for ts in (0.0, 600.0, 1200.0):
            counter.take(row(ts, power_violation_ns=int(ts * 1e9)))
        return counter.counts(xids=0).power_violation_s

    assert counted(590, 610) == pytest.approx(20.0)  # not the whole 600 s of the next row
    assert counted(610, 900) == pytest.approx(290.0)  # not 0: no row inside the range
    assert counted(0, 1200) == pytest.approx(1200.0)
    assert counted(1300, 1400) == 0.0  # after the last row: nothing known to have been spent


def test_errors_count_where_the_row_that_shows_them_is():
    counter = Counter(100.0, 200.0)
    for ts, errors in ((50.0, 1), (150.0, 3), (250.0, 7)):  # before, in, after the range
        counter.take(row(ts, ecc_uncorrected_aggregate=errors))

    assert counter.counts(xids=0).ecc_uncorrected == 2
