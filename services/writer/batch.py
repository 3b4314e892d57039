"""The writer's pending readings: a buffer bounded in bytes that says when a flush is due."""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence

from common.messages import Tick

# What a decoded tick costs in memory per byte of its message: measured 2.1 for 64-GPU ticks
# with their process lists (tracemalloc over held Tick objects); rounded up so that the bound
# errs on the side of holding less.
MEMORY_PER_MESSAGE_BYTE = 2.5


def held_bytes(frames: Sequence[bytes]) -> int:
    """Return the estimated memory, in bytes, that the tick decoded from frames takes held."""
    return int(MEMORY_PER_MESSAGE_BYTE * sum(len(frame) for frame in frames))


class PendingBatch:
    """Ticks received but not yet committed, oldest first, bounded by max_bytes of memory.

    A flush is due when the buffer holds max_rows readings or its oldest tick has waited
    max_age_s. When the database is failing, ticks stay here; past max_bytes the oldest are
    dropped and counted, since memory is finite (PCW_WRITER_BUFFER_BYTES, see docs/reliability.md).
    """

    def __init__(self, max_rows: int, max_age_s: float, max_bytes: int) -> None:
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        # (tick, monotonic time received, its run's position once it arrived, its held bytes)
        self._ticks: deque[tuple[Tick, float, int | None, int]] = deque()
        self.max_bytes = max_bytes
        self._rows = 0
        self._bytes = 0
        self.dropped_ticks = 0

    def __len__(self) -> int:
        return len(self._ticks)

    @property
    def rows(self) -> int:
        """Return the readings (GPU rows) held."""
        return self._rows

    @property
    def bytes(self) -> int:
        """Return the estimated memory the held ticks take, in bytes (see held_bytes)."""
        return self._bytes

    def add(
        self, tick: Tick, now_s: float, position: int | None = None, size_bytes: int = 0
    ) -> int:
        """Hold a tick received at monotonic time now_s; return how many old ticks it pushed out.

        position is its sampler run's position (see services.writer.sequences) once this tick
        had arrived: ticks are stored oldest first, so once this one is stored, so is that.
        size_bytes is its estimated memory (held_bytes); the oldest ticks go until it fits.
        """
        dropped = 0
        while self._ticks and self._bytes + size_bytes > self.max_bytes:
            self._forget_oldest()
            dropped += 1
        self.dropped_ticks += dropped
        self._ticks.append((tick, now_s, position, size_bytes))
        self._rows += len(tick.gpus)
        self._bytes += size_bytes
        return dropped

    def _forget_oldest(self) -> None:
        tick, _received_at, _position, size_bytes = self._ticks.popleft()
        self._rows -= len(tick.gpus)
        self._bytes -= size_bytes

    def due_at(self) -> float | None:
        """Return the monotonic time the held ticks are due by age, or None when empty."""
        return self._ticks[0][1] + self.max_age_s if self._ticks else None

    @property
    def full(self) -> bool:
        """Return whether a flush is due by size: max_rows readings, or half of max_bytes held.

        Half, so that a healthy writer stores a burst long before the bound would drop any of
        it: only a failing database fills the other half.
        """
        return bool(self._ticks) and (
            self._rows >= self.max_rows or 2 * self._bytes >= self.max_bytes
        )

    def is_due(self, now_s: float) -> bool:
        """Return whether a flush is due: full, or the oldest tick has waited long enough."""
        due_at = self.due_at()
        return due_at is not None and (self.full or now_s >= due_at)

    def peek(self, max_rows: int | None = None) -> list[Tick]:
        """Return the oldest ticks, up to max_rows readings (at least one tick)."""
        limit = max_rows or self.max_rows
        taken, rows = [], 0
        for tick, _received_at, _position, _size in self._ticks:
            if taken and rows + len(tick.gpus) > limit:
                break
            taken.append(tick)
            rows += len(tick.gpus)
        return taken

    def positions(self, count: int) -> dict[str, tuple[str, int]]:
        """Return {sampler_id: (host, position)} once the oldest `count` ticks are stored."""
        positions: dict[str, tuple[str, int]] = {}
        for index in range(count):
            tick, _received_at, position, _size = self._ticks[index]
            if position is not None:
                positions[tick.sampler_id] = (tick.host, position)
        return positions

    def commit(self, count: int) -> None:
        """Forget the oldest `count` ticks, which are now stored."""
        for _ in range(count):
            self._forget_oldest()
