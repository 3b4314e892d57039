"""The aligned schedule on injected clocks: exact wall-clock slots, no drift, no catch-up burst."""

from __future__ import annotations

import itertools
import random

import pytest

from common.schedule import AlignedSchedule


def schedule_on(clock, interval_s: float) -> AlignedSchedule:
    return AlignedSchedule(interval_s, wall=clock.wall, monotonic=clock.monotonic)


def run_tick(clock, schedule: AlignedSchedule, work_s: float = 0.0) -> float:
    """Wait for the next slot (by moving the clocks to its deadline), run, and return its time."""
    tick_ts, deadline = schedule.next_tick()
    assert deadline >= clock.monotonic() - 1e-6, "a deadline in the past would tick at once"
    clock.advance(deadline - clock.monotonic())
    clock.advance(work_s)
    schedule.mark_done(tick_ts)
    return tick_ts


@pytest.mark.parametrize("interval_s", [60.0, 1.0, 0.1, 0.25, 7.5, 3600.0])
def test_tick_times_are_exact_multiples_of_the_interval(clock, interval_s):
    clock.wall_s = 1_700_000_123.456789
    schedule = schedule_on(clock, interval_s)

    times = [run_tick(clock, schedule, work_s=0.01 * interval_s) for _ in range(50)]

    for tick_ts in times:
        slot = round(tick_ts / interval_s)
        assert tick_ts == round(slot * interval_s, 6)
        assert abs(tick_ts - slot * interval_s) < 1e-6
    assert times[0] > 1_700_000_123.456789
    assert times[0] - interval_s <= 1_700_000_123.456789


def test_the_default_minute_ticks_at_second_zero(clock):
    clock.wall_s = 1_699_999_997.0  # 2023-11-14 22:13:17 UTC

    tick_ts, deadline = schedule_on(clock, 60.0).next_tick()

    assert tick_ts == 1_700_000_040.0  # 22:14:00 UTC
    assert deadline == clock.monotonic() + 43.0


@pytest.mark.parametrize("interval_s", [0.1, 1.0, 60.0])
def test_no_drift_over_ten_thousand_ticks(clock, interval_s):
    clock.wall_s = 1_700_000_000.3
    schedule = schedule_on(clock, interval_s)
    rng = random.Random(7)
    start_slot = int(clock.wall_s // interval_s) + 1

    for k in range(10_000):
        # each tick's own work takes a random share of the interval, never a whole one
        tick_ts = run_tick(clock, schedule, work_s=rng.uniform(0, 0.9) * interval_s)
        assert tick_ts == round((start_slot + k) * interval_s, 6), f"tick {k}"
        assert schedule.skipped_slots(tick_ts) == 0


def test_no_drift_when_each_wake_up_is_exactly_on_time(clock):
    # waking exactly at the deadline, the float wall time can land a hair before the slot
    clock.wall_s = 1_700_000_000.0
    schedule = schedule_on(clock, 0.1)
    start_slot = 17_000_000_001

    times = [run_tick(clock, schedule) for _ in range(10_000)]

    assert times == [round((start_slot + k) * 0.1, 6) for k in range(10_000)]


def test_a_late_tick_skips_the_missed_slots_instead_of_bursting(clock):
    interval_s = 60.0
    clock.wall_s = 1_700_000_000.0 - 30.0
    schedule = schedule_on(clock, interval_s)
    first = run_tick(clock, schedule)

    # this tick's work runs 3.5 intervals past its slot
    late = run_tick(clock, schedule, work_s=3.5 * interval_s)
    tick_ts, deadline = schedule.next_tick()

    assert late == first + interval_s
    assert tick_ts == late + 4 * interval_s  # slots late+1 .. late+3 are gone
    assert schedule.skipped_slots(tick_ts) == 3
    assert deadline - clock.monotonic() == pytest.approx(0.5 * interval_s)

    clock.advance(deadline - clock.monotonic())
    schedule.mark_done(tick_ts)
    following, following_deadline = schedule.next_tick()
    assert following == tick_ts + interval_s  # back on the normal rhythm: no burst
    assert schedule.skipped_slots(following) == 0
    assert following_deadline - clock.monotonic() == pytest.approx(interval_s)


def test_nothing_is_skipped_before_the_first_tick(clock):
    schedule = schedule_on(clock, 1.0)

    tick_ts, _ = schedule.next_tick()

    assert schedule.skipped_slots(tick_ts) == 0


@pytest.mark.parametrize("step_back_s", [0.5, 60.0, 3600.0])
def test_never_the_same_slot_twice_when_the_wall_clock_steps_back(clock, step_back_s):
    interval_s = 1.0
    schedule = schedule_on(clock, interval_s)
    times = [run_tick(clock, schedule, work_s=0.2) for _ in range(5)]

    clock.step_wall(-step_back_s)
    times += [run_tick(clock, schedule, work_s=0.2) for _ in range(5)]

    assert len(set(times)) == len(times)
    assert times == sorted(times)
    assert all(b - a >= interval_s - 1e-6 for a, b in itertools.pairwise(times))


def test_a_wall_clock_step_forward_does_not_replay_the_slots_in_between(clock):
    schedule = schedule_on(clock, 1.0)
    before = run_tick(clock, schedule, work_s=0.2)

    clock.step_wall(3600.0)
    tick_ts, deadline = schedule.next_tick()

    assert tick_ts > before + 3600.0
    assert deadline - clock.monotonic() < 1.0  # the next slot on the new wall time, not a burst


@pytest.mark.parametrize("offset_s", [0.0, 0.3, 29.9, 30.1, 59.999])
def test_a_tick_at_start_is_followed_by_the_next_aligned_slot_and_skips_none(clock, offset_s):
    interval_s = 60.0
    clock.wall_s = 1_700_000_040.0 + offset_s  # 1_700_000_040 is a whole minute
    schedule = schedule_on(clock, interval_s)

    start_ts = schedule.now()
    schedule.mark_done(start_ts)
    tick_ts, deadline = schedule.next_tick()

    assert start_ts == round(clock.wall_s, 6)
    assert tick_ts == 1_700_000_100.0  # the next whole minute, never the one after it
    assert schedule.skipped_slots(tick_ts) == 0
    assert deadline - clock.monotonic() == pytest.approx(60.0 - offset_s, abs=1e-6)
