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


def fill_buckets(
    rows: Sequence[Sequence[Any]],
    first_bucket: int,
    bucket_count: int,
    step_s: int,
    metrics: Sequence[str],
) -> list[dict[str, Any]]:
    """Return every bucket of the range in order, as the history API shows it.

    `rows` are (bucket number, count, then mean and max of each metric in turn). A bucket with no
    row is a gap: count 0, mean and max null. `ts` is the bucket's start in UTC epoch seconds.
    """
    buckets: list[dict[str, Any]] = [
        {"ts": (first_bucket + offset) * step_s, "count": 0, "mean": None, "max": None}
        for offset in range(bucket_count)
    ]
    for bucket, count, *values in rows:
        offset = bucket - first_bucket
        if not 0 <= offset < bucket_count:
            continue  # cannot happen with history_sql's range; never index out of the list
        buckets[offset] = {
            "ts": bucket * step_s,
            "count": count,
            "mean": dict(zip(metrics, values[0::2], strict=True)),
            "max": dict(zip(metrics, values[1::2], strict=True)),
        }
    return buckets
