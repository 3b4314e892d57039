"""ThrottledLog.due: a caller that words its own line gets the count held back since the last."""

from __future__ import annotations

import logging

from common.throttle import ThrottledLog


def test_due_sums_the_counts_held_back_into_the_next_line():
    now = [0.0]
    throttle = ThrottledLog(logging.getLogger("test.due"), 10.0, clock=lambda: now[0])

    first = throttle.due("dropped", 3)
    held = [throttle.due("dropped", 5), throttle.due("dropped", 2)]
    now[0] = 10.0
    next_line = throttle.due("dropped", 1)

    assert (first, held, next_line) == (3, [None, None], 8)


def test_due_counts_each_kind_apart():
    throttle = ThrottledLog(logging.getLogger("test.due"), 10.0, clock=lambda: 0.0)

    assert [throttle.due("a"), throttle.due("b"), throttle.due("a")] == [1, 1, None]
