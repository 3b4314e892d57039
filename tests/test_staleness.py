"""The one staleness rule (common.staleness), at its boundary."""

from __future__ import annotations

import pytest

from common.staleness import is_stale, stale_after_s, stale_since_ts


@pytest.mark.parametrize(
    ("interval_s", "bound_s"),
    [(60.0, 190.0), (10.0, 40.0), (2.0, 16.0), (1.0, 13.0), (0.5, 11.5), (3600.0, 10810.0)],
)
def test_a_host_is_stale_after_three_intervals_and_ten_seconds(interval_s, bound_s):
    last_seen_s = 1_000_000.0
    assert stale_after_s(interval_s) == bound_s
    assert stale_since_ts(last_seen_s, interval_s) == last_seen_s + bound_s
    assert not is_stale(last_seen_s, interval_s, now_s=last_seen_s + bound_s)
    assert is_stale(last_seen_s, interval_s, now_s=last_seen_s + bound_s + 0.001)


def test_a_late_tick_does_not_flag_a_host():
    # Seen at 0 s; the ticks due at 60 and 120 s are lost, the one due at 180 s is 5 s late.
    assert not is_stale(0.0, 60.0, now_s=185.0)


def test_a_host_never_seen_is_stale():
    assert is_stale(None, 60.0, now_s=0.0)
