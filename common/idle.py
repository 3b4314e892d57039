"""Find GPUs that are idle but allocated: holding memory while nobody computes on them (pure).

A reading is idle-and-allocated when util_gpu_pct < PCW_IDLE_UTIL_PCT (a null utilization or an
errored reading is not idle: it says nothing) and the GPU holds memory:

- where the tick's process list is known: at least one process is on it that NVML does not
  report as holding 0 bytes (a process whose memory NVML cannot tell, as under MIG, counts);
- where the list is unknown: mem_used_bytes is over ALLOCATED_FRACTION of mem_total_bytes (the
  driver's own reservation on an idle GPU stays under it).

A GPU is flagged when its newest readings have been idle-and-allocated without a break for at
least PCW_IDLE_AFTER_S, measured from the first reading of that run (since_ts) to the newest.

The run is found walking back from the newest reading (run_since) or, from a remembered start,
walking forward over the readings that came since (run_since_after); both give the same answer.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

ALLOCATED_FRACTION = 0.01


class Coverage:
    """A union of closed intervals [low, high] of tick times, asked whether it holds a time."""

    def __init__(self, intervals: Iterable[tuple[float, float]]) -> None:
        merged: list[list[float]] = []
        for low, high in sorted(intervals):
            if merged and low <= merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self._lows = [low for low, _ in merged]
        self._highs = [high for _, high in merged]

    def holds(self, ts: float) -> bool:
        """Return whether ts lies in one of the intervals."""
        at = bisect.bisect_right(self._lows, ts) - 1
        return at >= 0 and ts <= self._highs[at]


@dataclass(frozen=True)
class Reading:
    """What idle detection needs of one reading."""

    ts: float
    util_gpu_pct: int | None
    mem_used_bytes: int | None
    mem_total_bytes: int | None
    error: str | None = None


def memory_held(mem_used_bytes: int | None, mem_total_bytes: int | None) -> bool:
    """Return whether a GPU whose process list is unknown holds memory."""
    if mem_used_bytes is None or not mem_total_bytes:
        return False
    return mem_used_bytes > ALLOCATED_FRACTION * mem_total_bytes


def low_util(reading: Reading, util_pct: float) -> bool:
    """Return whether one reading is error-free with a utilization under util_pct."""
    return (
        reading.error is None
        and reading.util_gpu_pct is not None
        and reading.util_gpu_pct < util_pct
    )


def is_idle_allocated(
    reading: Reading, util_pct: float, list_known: bool, held_by_process: bool
) -> bool:
    """Return whether one reading is idle (under util_pct) while the GPU holds memory."""
    if not low_util(reading, util_pct):
        return False
    if list_known:
        return held_by_process
    return memory_held(reading.mem_used_bytes, reading.mem_total_bytes)


def run_since(
    newest_first: Iterable[Reading], util_pct: float, known: Coverage, held: Coverage
) -> float | None:
    """Return the first reading's ts of the unbroken idle-and-allocated run ending at the newest.

    None when the newest reading is not idle-and-allocated. `known`: the tick times whose process
    list is known; `held`: those at which a process held memory.
    """
    since_ts = None
    for reading in newest_first:
        if not is_idle_allocated(
            reading, util_pct, known.holds(reading.ts), held.holds(reading.ts)
        ):
            break
        since_ts = reading.ts
    return since_ts


def run_since_after(
    since_ts: float | None,
    oldest_first: Iterable[Reading],
    util_pct: float,
    known: Coverage,
    held: Coverage,
) -> float | None:
    """Return where the run stands after the readings that follow a run begun at since_ts.

    The same answer as run_since over all the readings, walked forward from a known start:
    since_ts None means no run was going on before them.
    """
    for reading in oldest_first:
        if is_idle_allocated(reading, util_pct, known.holds(reading.ts), held.holds(reading.ts)):
            if since_ts is None:
                since_ts = reading.ts
        else:
            since_ts = None
    return since_ts


def flagged(since_ts: float | None, latest_ts: float, idle_after_s: float) -> bool:
    """Return whether a run that began at since_ts and goes on at latest_ts is long enough."""
    return since_ts is not None and latest_ts - since_ts >= idle_after_s
