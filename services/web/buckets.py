"""Choose the bucket width of a history query: aligned to epoch multiples, never over `points`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

DAY_S = 86400
DAY_SEARCH_STEPS = 64
# "Nice" widths a person reads off a time axis; beyond the last one, whole days.
STEP_LADDER_S: tuple[int, ...] = (
    1,
    2,
    5,
    10,
    15,
    30,
    60,
    120,
    300,
    600,
    900,
    1800,
    3600,
    7200,
    10800,
    21600,
    43200,
    DAY_S,
)


def bucket_span(from_s: float, to_s: float, step_s: int) -> tuple[int, int]:
    """Return (first bucket number, bucket count) of the aligned buckets covering [from_s, to_s).

    Bucket number k covers [k * step_s, (k + 1) * step_s) in UTC epoch seconds.
    """
    first = math.floor(from_s / step_s)
    end = math.ceil(to_s / step_s)
    return first, max(1, end - first)


def choose_step_s(from_s: float, to_s: float, points: int) -> int:
    """Return a nice bucket width in seconds giving at most `points` aligned buckets.

    On the ladder it is the smallest that fits. Alignment can add a bucket at each end, so the
    count is checked, not only the width. Beyond the ladder, whole days, found in a bounded
    number of steps whatever the range (a request must never spin the event loop).
    """
    for step_s in STEP_LADDER_S:
        if bucket_span(from_s, to_s, step_s)[1] <= points:
            return step_s
    span_s = to_s - from_s
    days = max(2, math.ceil(span_s / points / DAY_S))
    for candidate in range(days, days + DAY_SEARCH_STEPS):
        if bucket_span(from_s, to_s, candidate * DAY_S)[1] <= points:
            return candidate * DAY_S
    if points > 1:
        # width >= span / (points - 1) gives at most (points - 1) + 1 buckets, aligned or not
        return math.ceil(span_s / (points - 1) / DAY_S) * DAY_S
    return math.ceil(to_s / DAY_S) * DAY_S  # one bucket, from the epoch, holds the range


def empty_buckets(first_bucket: int, bucket_count: int, step_s: int) -> list[dict[str, Any]]:
    """Return the buckets of a GPU with no reading in the range: every one a gap.

    The same shape as history_json_sql gives: `ts` (the bucket's start, UTC epoch seconds),
    count 0, mean and max null.
    """
    return [
        {"ts": (first_bucket + offset) * step_s, "count": 0, "mean": None, "max": None}
        for offset in range(bucket_count)
    ]


def empty_columns(
    metrics: Sequence[str], bucket_count: int
) -> tuple[list[int], dict[str, list[None]]]:
    """Return the columns of a GPU with no reading in the range: counts 0, every value null.

    The same shape as history_reads.columns_sql gives: (counts, {metric: [null...]}), the
    second serving as both the means and the maxima.
    """
    return [0] * bucket_count, {name: [None] * bucket_count for name in metrics}
