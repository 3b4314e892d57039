"""The writer's pending readings: a buffer bounded in bytes that says when a flush is due.

At most one batch (max_rows readings, the next to be stored) is held decoded. A tick that comes
while that much is held, as when the database fails or a burst arrives, is validated (decoded)
on arrival, then kept as the message it came in (about 2.5 times less memory) and decoded
again only when its turn to be stored comes; the byte bound counts it as if decoded.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from common.messages import Tick

# What a decoded tick costs in memory per byte of its message: measured 2.1 for 64-GPU ticks
# with their process lists (tracemalloc over held Tick objects); rounded up so that the bound
# errs on the side of holding less.
MEMORY_PER_MESSAGE_BYTE = 2.5


def held_bytes(frames: Sequence[bytes]) -> int:
    """Return the estimated memory, in bytes, that the tick decoded from frames takes held."""
    return int(MEMORY_PER_MESSAGE_BYTE * sum(len(frame) for frame in frames))


@dataclass(slots=True)
class _Held:
    """One tick held: decoded (tick), or as its message (frames) until its batch comes."""

    tick: Tick | None
    frames: Sequence[bytes] | None
    sampler_id: str
    host: str
    readings: int
    received_s: float  # monotonic
    position: int | None  # its run's position once it arrived
    size_bytes: int  # as if decoded (held_bytes): the bound holds whichever form it is in

    def decoded(self) -> Tick:
        """Return the tick, decoding its message (validated once already) the first time."""
        if self.tick is None:
            assert self.frames is not None
            self.tick, self.frames = Tick.from_frames(list(self.frames)), None
        return self.tick


class PendingBatch:
    """Ticks received but not yet committed, oldest first, bounded by max_bytes of memory.

    A flush is due when the buffer holds max_rows readings or its oldest tick has waited
    max_age_s. When the database is failing, ticks stay here; past max_bytes the oldest are
    dropped and counted, since memory is finite (PCW_WRITER_BUFFER_BYTES, see docs/reliability.md).
    Decoded ticks are at most max_rows readings (or one tick larger than that); the rest are
    held as their messages (see the module's docstring).
    """

    def __init__(self, max_rows: int, max_age_s: float, max_bytes: int) -> None:
        self.max_rows = max_rows
        self.max_age_s = max_age_s
        self._ticks: deque[_Held] = deque()
        self.max_bytes = max_bytes
        self._rows = 0
        self._bytes = 0
        self._decoded_rows = 0
        self._raw_ticks = 0  # held as messages: always the newest, after the decoded ones
        self.dropped_ticks = 0

    def __len__(self) -> int:
        return len(self._ticks)

    @property
    def rows(self) -> int:
        """Return the readings (GPU rows) held."""
        return self._rows

    @property
    def decoded_rows(self) -> int:
        """Return the readings held decoded (at most max_rows, or one larger tick)."""
        return self._decoded_rows

    @property
    def bytes(self) -> int:
        """Return the estimated memory the held ticks take, in bytes (see held_bytes)."""
        return self._bytes

    def add(
        self,
        tick: Tick,
        now_s: float,
        position: int | None = None,
        size_bytes: int = 0,
        frames: Sequence[bytes] | None = None,
    ) -> int:
        """Hold a tick received at monotonic time now_s; return how many old ticks it pushed out.

        position is its sampler run's position (see services.writer.sequences) once this tick
        had arrived: ticks are stored oldest first, so once this one is stored, so is that.
        size_bytes is its estimated memory decoded (held_bytes), counted against max_bytes in
        either form, so that the bound holds when its turn comes to be decoded. frames, the
        message it was decoded from: given, the tick is kept as that message (2.5 times less
        memory) while a batch is held decoded already. The oldest ticks go until it fits.
        """
        readings = len(tick.gpus)
        held = _Held(tick, None, tick.sampler_id, tick.host, readings, now_s, position, size_bytes)
        decoded_full = self._decoded_rows and self._decoded_rows + readings > self.max_rows
        if frames is not None and (self._raw_ticks or decoded_full):
            held.tick, held.frames = None, frames
            self._raw_ticks += 1
        dropped = 0
        while self._ticks and self._bytes + held.size_bytes > self.max_bytes:
            self._forget_oldest()
            dropped += 1
        self.dropped_ticks += dropped
        self._ticks.append(held)
        self._rows += readings
        self._bytes += held.size_bytes
        if held.tick is not None:
            self._decoded_rows += readings
        return dropped

    def _forget_oldest(self) -> None:
        held = self._ticks.popleft()
        self._rows -= held.readings
        self._bytes -= held.size_bytes
        if held.tick is not None:
            self._decoded_rows -= held.readings
        else:
            self._raw_ticks -= 1

    def due_at(self) -> float | None:
        """Return the monotonic time the held ticks are due by age, or None when empty."""
        return self._ticks[0].received_s + self.max_age_s if self._ticks else None

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
        """Return the oldest ticks, up to max_rows readings (at least one tick), decoded."""
        limit = max_rows or self.max_rows
        taken: list[Tick] = []
        rows = 0
        for held in self._ticks:
            if taken and rows + held.readings > limit:
                break
            if held.tick is None:  # its batch has come
                self._decoded_rows += held.readings
                self._raw_ticks -= 1
            taken.append(held.decoded())
            rows += held.readings
        return taken

    def positions(self, count: int) -> dict[str, tuple[str, int]]:
        """Return {sampler_id: (host, position)} once the oldest `count` ticks are stored."""
        positions: dict[str, tuple[str, int]] = {}
        for index in range(count):
            held = self._ticks[index]
            if held.position is not None:
                positions[held.sampler_id] = (held.host, held.position)
        return positions

    def commit(self, count: int) -> None:
        """Forget the oldest `count` ticks, which are now stored."""
        for _ in range(count):
            self._forget_oldest()
