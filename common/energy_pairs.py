"""The energy between a GPU's consecutive readings, and the reads that feed it (pure, shared).

One walk, used by the writer to fill the energy buckets (services/writer/energy_buckets.py) and
by the web to integrate a range's edges and, as the oracle, a whole range
(services/web/energy_reads.py): both must count every pair of readings the same way, or the sum
of buckets would differ from the walk over the same readings.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.schema import ENERGY_MAX_GAP_INTERVALS

_ENERGY_COLUMNS = "SELECT ts, energy_j, power_w, error FROM samples"
READINGS_SQL = _ENERGY_COLUMNS + " WHERE gpu_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
# The readings before a time whose pairs with the readings from that time on are theirs: the
# last one, and the last error-free one (the counter counts across error ticks), in ts order.
BEFORE_SQL = (
    f"SELECT * FROM ({_ENERGY_COLUMNS} WHERE gpu_id = ?1 AND ts < ?2 ORDER BY ts DESC LIMIT 1)"
    f" UNION SELECT * FROM ({_ENERGY_COLUMNS} WHERE gpu_id = ?1 AND ts < ?2 AND error IS NULL"
    " ORDER BY ts DESC LIMIT 1) ORDER BY ts"
)

Reading = tuple[float, float | None, float | None, str | None]  # ts, energy_j, power_w, error


@dataclass(frozen=True)
class EnergySums:
    """Joules and pairs of readings counted, by source.

    A power pair counts only when its readings are at most ENERGY_MAX_GAP_INTERVALS intervals
    apart, and the interval is the GPU's as the reader knows it. So that sums made under one
    interval can be trusted under another, they carry the longest gap of a power pair counted
    and the shortest gap of one left out for its gap (None: no such pair): they are the sums
    for any gap limit from the first (inclusive) up to the second (exclusive).
    """

    counter_j: float = 0.0
    counter_pairs: int = 0
    power_j: float = 0.0
    power_pairs: int = 0
    counted_gap_max_s: float | None = None
    skipped_gap_min_s: float | None = None

    def hold_for(self, max_gap_s: float) -> bool:
        """Return whether these sums are the walk's under this gap limit."""
        return (self.counted_gap_max_s is None or self.counted_gap_max_s <= max_gap_s) and (
            self.skipped_gap_min_s is None or self.skipped_gap_min_s > max_gap_s
        )

    def __add__(self, other: EnergySums) -> EnergySums:
        return EnergySums(
            self.counter_j + other.counter_j,
            self.counter_pairs + other.counter_pairs,
            self.power_j + other.power_j,
            self.power_pairs + other.power_pairs,
            _pick(max, self.counted_gap_max_s, other.counted_gap_max_s),
            _pick(min, self.skipped_gap_min_s, other.skipped_gap_min_s),
        )


def _pick(
    choose: Callable[[float, float], float], first: float | None, second: float | None
) -> float | None:
    if first is None:
        return second
    return first if second is None else choose(first, second)


def integrate(readings: Iterable[Reading], interval_s: float) -> EnergySums:
    """Add up the energy between readings (ts, energy_j, power_w, error), in ts order.

    Each reading after the first counts the energy since the one before it: the counter's
    increase (a decrease is a reset: the new value counts) against the previous error-free
    reading, across error ticks and gaps; where either counter is null, the mean power times
    the time between them, only when the previous reading is that error-free one and at most
    ENERGY_MAX_GAP_INTERVALS x interval_s before. A reading in error adds nothing. The same
    rules as the `energy` view (common.schema), in Python: SQLite's window functions took ten
    times as long as this loop over the same rows.
    """
    counter_j = power_j = 0.0
    counter_pairs = power_pairs = 0
    counted_gap_max_s = skipped_gap_min_s = None
    max_gap_s = ENERGY_MAX_GAP_INTERVALS * interval_s
    prev_any_ts = prev_ts = prev_energy_j = prev_power_w = None
    for ts, energy_j, power_w, error in readings:
        if error is not None:
            prev_any_ts = ts
            continue
        if prev_ts is not None:
            if energy_j is not None and prev_energy_j is not None:
                counter_j += energy_j - prev_energy_j if energy_j >= prev_energy_j else energy_j
                counter_pairs += 1
            elif prev_any_ts == prev_ts and (power_w is not None or prev_power_w is not None):
                gap_s = ts - prev_ts
                if gap_s <= max_gap_s:
                    now_w = power_w if power_w is not None else prev_power_w
                    before_w = prev_power_w if prev_power_w is not None else power_w
                    power_j += (now_w + before_w) / 2 * gap_s  # type: ignore[operator]
                    power_pairs += 1
                    if counted_gap_max_s is None or gap_s > counted_gap_max_s:
                        counted_gap_max_s = gap_s
                elif skipped_gap_min_s is None or gap_s < skipped_gap_min_s:
                    skipped_gap_min_s = gap_s
        prev_any_ts = prev_ts = ts
        prev_energy_j, prev_power_w = energy_j, power_w
    return EnergySums(
        counter_j, counter_pairs, power_j, power_pairs, counted_gap_max_s, skipped_gap_min_s
    )
