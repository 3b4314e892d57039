"""The writer's pending readings: a bounded buffer that says when it is due for a flush."""

from __future__ import annotations

from collections import deque

from common.messages import Tick


class PendingBatch:
    """Ticks received but not yet committed, oldest first, bounded by max_ticks.

    A flush is due when the buffer holds max_rows readings or its oldest tick has waited
    max_age_s. When the database is failing, ticks stay here; past max_ticks the oldest are
    dropped and counted, since memory is finite (the bound is documented in README).
    """

    def __init__(self, max_rows: int, max_age_s: float, max_ticks: int) -> None:
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        # (tick, monotonic time received, its run's position once it arrived)
        self._ticks: deque[tuple[Tick, float, int | None]] = deque()
        self._max_ticks = max_ticks
        self._rows = 0
        self.dropped_ticks = 0

    def __len__(self) -> int:
        return len(self._ticks)

    @property
    def rows(self) -> int:
        """Return the readings (GPU rows) held."""
        return self._rows

    def add(self, tick: Tick, now_s: float, position: int | None = None) -> None:
        """Hold a tick received at monotonic time now_s.

        position is its sampler run's position (see services.writer.sequences) once this tick
        had arrived: ticks are stored oldest first, so once this one is stored, so is that.
        """
        if len(self._ticks) >= self._max_ticks:
            self._rows -= len(self._ticks.popleft()[0].gpus)
            self.dropped_ticks += 1
        self._ticks.append((tick, now_s, position))
        self._rows += len(tick.gpus)

    def due_at(self) -> float | None:
        """Return the monotonic time the held ticks are due by age, or None when empty."""
        return self._ticks[0][1] + self.max_age_s if self._ticks else None

    def is_due(self, now_s: float) -> bool:
        """Return whether a flush is due: full, or the oldest tick has waited long enough."""
        due_at = self.due_at()
        return due_at is not None and (self._rows >= self.max_rows or now_s >= due_at)

    def peek(self, max_rows: int | None = None) -> list[Tick]:
        """Return the oldest ticks, up to max_rows readings (at least one tick)."""
        limit = max_rows or self.max_rows
        taken, rows = [], 0
        for tick, _received_at, _position in self._ticks:
            if taken and rows + len(tick.gpus) > limit:
                break
            taken.append(tick)
            rows += len(tick.gpus)
        return taken

    def positions(self, count: int) -> dict[str, tuple[str, int]]:
        """Return {sampler_id: (host, position)} once the oldest `count` ticks are stored."""
        positions: dict[str, tuple[str, int]] = {}
        for index in range(count):
            tick, _received_at, position = self._ticks[index]
            if position is not None:
                positions[tick.sampler_id] = (tick.host, position)
        return positions

    def commit(self, count: int) -> None:
        """Forget the oldest `count` ticks, which are now stored."""
        for _ in range(count):
            self._rows -= len(self._ticks.popleft()[0].gpus)
