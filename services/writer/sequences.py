"""Which ticks of each sampler run the writer holds, and which it still has to ask for.

Every tick carries its sampler run's id and a sequence number that grows by one per tick. A
sequence number that jumps ahead opens a gap; a replayed tick fills it; a gap the sampler can
no longer fill is given up, logged and counted, never papered over.

A run's *position* is the highest sequence number at or below which nothing is outstanding: the
writer persists it with the rows, and asks for what follows it after a restart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass
class Run:
    """What is known of one sampler run."""

    host: str
    highest: int
    missing: list[list[int]] = field(default_factory=list)  # sorted, disjoint [lo, hi] ranges

    @property
    def position(self) -> int:
        """Return the highest seq with nothing outstanding at or below it."""
        return self.missing[0][0] - 1 if self.missing else self.highest


class SequenceTracker:
    """Gaps per sampler run, started from the positions persisted by the previous writer."""

    def __init__(self, positions: dict[str, tuple[str, int]] | None = None) -> None:
        self._persisted = dict(positions or {})
        self.runs: dict[str, Run] = {}
        self.gaps = 0
        self.lost_ticks = 0

    def observe(self, sampler_id: str, host: str, seq: int) -> tuple[int, int] | None:
        """Record a received tick; return the range it revealed as missing, if any."""
        run = self.runs.get(sampler_id)
        if run is None:  # a new run of this host's sampler: its earlier runs are over
            self._abandon_others(host, sampler_id)
            _, position = self._persisted.pop(sampler_id, (host, -1))
            run = self.runs[sampler_id] = Run(host=host, highest=position)
        if seq > run.highest:
            gap = (run.highest + 1, seq - 1) if seq > run.highest + 1 else None
            if gap:
                run.missing.append(list(gap))
            run.highest = seq
            return gap
        self._remove(run, seq, seq)
        return None

    def outstanding(self, sampler_id: str, lo: int, hi: int) -> list[tuple[int, int]]:
        """Return the parts of [lo, hi] of that run that are still outstanding."""
        run = self.runs.get(sampler_id)
        if run is None:
            return []
        return [(max(a, lo), min(b, hi)) for a, b in run.missing if a <= hi and b >= lo]

    def give_up(self, sampler_id: str, lo: int, hi: int, reason: str) -> int:
        """Stop waiting for [lo, hi] of a run; return how many ticks that loses (logged)."""
        run = self.runs.get(sampler_id)
        if run is None:
            return 0
        lost = self._remove(run, lo, hi)
        if lost:
            self.gaps += 1
            self.lost_ticks += lost
            log.warning(
                "gap of %d tick(s) from host %s (run %s, seq %d-%d) cannot be filled: %s",
                lost,
                run.host,
                sampler_id,
                lo,
                hi,
                reason,
            )
        return lost

    def _abandon_others(self, host: str, current_id: str) -> int:
        """Give up every gap of the host's earlier runs (its sampler restarted)."""
        lost = 0
        for sampler_id, run in list(self.runs.items()):
            if run.host == host and sampler_id != current_id:
                for lo, hi in list(run.missing):
                    lost += self.give_up(sampler_id, lo, hi, "the sampler restarted since")
                del self.runs[sampler_id]
        return lost

    def positions(self) -> dict[str, tuple[str, int]]:
        """Return (host, position) of every run seen."""
        return {sampler_id: (run.host, run.position) for sampler_id, run in self.runs.items()}

    @staticmethod
    def _remove(run: Run, lo: int, hi: int) -> int:
        """Take [lo, hi] out of the run's missing ranges; return how many were outstanding."""
        removed, kept = 0, []
        for a, b in run.missing:
            if b < lo or a > hi:
                kept.append([a, b])
                continue
            removed += min(b, hi) - max(a, lo) + 1
            if a < lo:
                kept.append([a, lo - 1])
            if b > hi:
                kept.append([hi + 1, b])
        run.missing = kept
        return removed
