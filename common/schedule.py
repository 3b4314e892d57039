"""A drift-free tick schedule aligned to wall-clock multiples of the interval.

Each tick's time is computed afresh from the wall clock (k * interval), never by adding the
interval to the last sleep, so errors do not accumulate. A late tick is not doubled up: the next
tick is the first multiple strictly after now, so missed slots are skipped, not replayed.
The wait itself is on time.monotonic(), which NTP steps cannot move. A tick run at once, off the
schedule (the sampler's first, at start), counts as the slot it falls in: the next tick is the
next multiple after it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable


class AlignedSchedule:
    """Yield tick times (UTC epoch seconds) at multiples of interval_s."""

    def __init__(
        self,
        interval_s: float,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval_s = interval_s
        self._wall = wall
        self._monotonic = monotonic
        self._last_slot: int | None = None

    def next_tick(self) -> tuple[float, float]:
        """Return (tick_ts, monotonic deadline) of the next slot strictly after now."""
        wall_now, mono_now = self._wall(), self._monotonic()
        slot = math.floor(wall_now / self.interval_s) + 1
        if self._last_slot is not None and slot <= self._last_slot:
            slot = self._last_slot + 1  # never the same slot twice, even if the clock steps back
        tick_ts = round(slot * self.interval_s, 6)  # 0.1 * k gives the same float every time
        return tick_ts, mono_now + (tick_ts - wall_now)

    def now(self) -> float:
        """Return the wall time now (UTC epoch s, to the microsecond), for a tick run at once."""
        return round(self._wall(), 6)

    def mark_done(self, tick_ts: float) -> None:
        """Record that the tick at tick_ts (a slot's time, or one within a slot) has run."""
        slot = round(tick_ts / self.interval_s)  # not floor: 0.3 / 0.1 is 2.9999999999999996
        if round(slot * self.interval_s, 6) > tick_ts:  # within the slot before, not on one
            slot -= 1
        self._last_slot = slot

    def skipped_slots(self, tick_ts: float) -> int:
        """Return how many slots were skipped between the last tick and tick_ts."""
        if self._last_slot is None:
            return 0
        return max(0, round(tick_ts / self.interval_s) - self._last_slot - 1)
