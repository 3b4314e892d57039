"""Add up GPU-hours and GPU-memory-hours per user, process or container over a range (pure).

A span of ticks t0..tn (services/writer/spans.py) covers [t0, tn + interval_s): each tick stands
for the interval that follows it. Over a range [from, to):

- GPU-hours of a key: per GPU, the length of the union of the time its spans cover inside the
  range (two processes of one user on one GPU at once count once), summed over GPUs.
- GPU-memory-hours of a key: the sum over its spans of used_mem_bytes times the time covered
  inside the range, in GiB-hours (two processes of one user holding memory at once both count).
  A span whose memory NVML could not tell adds time but no memory.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

GIB = 1 << 30
HOUR_S = 3600.0
USAGE_KEYS = ("user", "process", "container")


@dataclass(frozen=True)
class UsageSpan:
    """One process span as the usage needs it; key None = not visible or unknown."""

    gpu_uuid: str
    key: str | None
    start_ts: float
    end_ts: float
    interval_s: float
    used_mem_bytes: int | None


def covered(span: UsageSpan, from_s: float, to_s: float) -> tuple[float, float] | None:
    """Return the part of [from_s, to_s) the span covers, or None when it covers none of it."""
    low_s = max(span.start_ts, from_s)
    high_s = min(span.end_ts + span.interval_s, to_s)
    return (low_s, high_s) if high_s > low_s else None


def union_s(intervals: Iterable[tuple[float, float]]) -> float:
    """Return the total length (s) of the union of [low, high) intervals."""
    total_s, reach_s = 0.0, float("-inf")
    for low_s, high_s in sorted(intervals):
        if high_s <= reach_s:
            continue
        total_s += high_s - max(low_s, reach_s)
        reach_s = high_s
    return total_s


def usage_rows(spans: Iterable[UsageSpan], from_s: float, to_s: float) -> list[dict[str, Any]]:
    """Return the API's rows: {key, gpu_hours, gpu_mem_gib_hours, gpus}, most GPU-hours first."""
    times: dict[str | None, dict[str, list[tuple[float, float]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    mem_gib_s: dict[str | None, float] = defaultdict(float)
    for span in spans:
        part = covered(span, from_s, to_s)
        if part is None:
            continue
        times[span.key][span.gpu_uuid].append(part)
        if span.used_mem_bytes:
            mem_gib_s[span.key] += span.used_mem_bytes / GIB * (part[1] - part[0])
    rows = [
        {
            "key": key,
            "gpu_hours": sum(union_s(parts) for parts in per_gpu.values()) / HOUR_S,
            "gpu_mem_gib_hours": mem_gib_s[key] / HOUR_S,
            "gpus": sorted(per_gpu),
        }
        for key, per_gpu in times.items()
    ]
    rows.sort(key=lambda row: (-row["gpu_hours"], row["key"] is None, row["key"] or ""))
    return rows
