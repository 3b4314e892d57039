"""Summarise energy per GPU and per host over a range, in kWh with an optional cost (pure).

Per GPU, the energy up to each reading inside the range, from the reading before it (which may
be before the range, as the `energy` view's delta_j: consecutive ranges add up), comes from the
energy counter (its increase; a decrease is a reset and the new value counts, being what was
used since the reset), or, only where the counter is null, from the mean of the two power
readings times the time between them, and then only where they are at most two intervals apart
and neither is in error: power is never integrated across a gap or an error tick (the same rules
as the `energy` view, common.schema). A reading in error adds nothing. The counter counts across
a gap and across error ticks (against the previous error-free reading), being a measure of what
was really used: a counter that reads the same after an outage adds nothing.

source per GPU: "counter" (every pair from the counter), "power" (every pair from power),
"mixed" (some of each), "none" (no pair could say: kwh and cost are null).
cost = kWh x PCW_ENERGY_PRICE_PER_KWH, null without a price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.schema import ENERGY_MAX_GAP_INTERVALS

J_PER_KWH = 3_600_000.0


@dataclass(frozen=True)
class EnergySums:
    """Joules and pairs of readings counted, by source."""

    counter_j: float = 0.0
    counter_pairs: int = 0
    power_j: float = 0.0
    power_pairs: int = 0


def integrate(
    readings: Iterable[tuple[float, float | None, float | None, str | None]], interval_s: float
) -> EnergySums:
    """Add up the energy between readings (ts, energy_j, power_w, error), in ts order.

    A reading in error adds nothing and no power is integrated into or out of it; the counter's
    increase is taken against the previous error-free reading, across error ticks and gaps.
    The same rules as the `energy` view (common.schema), in Python: SQLite's window functions
    took ten times as long as this loop over the same rows.
    """
    counter_j = power_j = 0.0
    counter_pairs = power_pairs = 0
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
            elif (
                prev_any_ts == prev_ts
                and ts - prev_ts <= max_gap_s
                and (power_w is not None or prev_power_w is not None)
            ):
                now_w = power_w if power_w is not None else prev_power_w
                before_w = prev_power_w if prev_power_w is not None else power_w
                power_j += (now_w + before_w) / 2 * (ts - prev_ts)  # type: ignore[operator]
                power_pairs += 1
        prev_any_ts = prev_ts = ts
        prev_energy_j, prev_power_w = energy_j, power_w
    return EnergySums(counter_j, counter_pairs, power_j, power_pairs)


@dataclass(frozen=True)
class GpuEnergy:
    """One GPU's energy over a range: joules and pair counts by source."""

    host: str
    gpu_uuid: str
    gpu_index: int
    gpu_name: str
    counter_j: float
    counter_pairs: int
    power_j: float
    power_pairs: int

    @property
    def source(self) -> str:
        """Return "counter", "power", "mixed" or "none"."""
        if self.counter_pairs and self.power_pairs:
            return "mixed"
        if self.counter_pairs:
            return "counter"
        return "power" if self.power_pairs else "none"

    @property
    def kwh(self) -> float | None:
        """Return the energy in kWh, None when no pair of readings could say."""
        if self.source == "none":
            return None
        return (self.counter_j + self.power_j) / J_PER_KWH


def _cost(kwh: float | None, price_per_kwh: float | None) -> float | None:
    return None if kwh is None or price_per_kwh is None else kwh * price_per_kwh


def _sum(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) if known else None


def energy_report(
    gpus: Iterable[GpuEnergy],
    from_s: float,
    to_s: float,
    price_per_kwh: float | None,
    currency: str,
) -> dict[str, Any]:
    """Return the /api/v1/energy answer: per GPU, per host and in total."""
    ordered = sorted(gpus, key=lambda gpu: (gpu.host, gpu.gpu_index, gpu.gpu_uuid))
    per_gpu = [
        {
            "host": gpu.host,
            "gpu_uuid": gpu.gpu_uuid,
            "gpu_index": gpu.gpu_index,
            "gpu_name": gpu.gpu_name,
            "kwh": gpu.kwh,
            "source": gpu.source,
            "cost": _cost(gpu.kwh, price_per_kwh),
        }
        for gpu in ordered
    ]
    hosts = []
    for host in dict.fromkeys(gpu.host for gpu in ordered):
        kwh = _sum(gpu.kwh for gpu in ordered if gpu.host == host)
        hosts.append({"host": host, "kwh": kwh, "cost": _cost(kwh, price_per_kwh)})
    total_kwh = _sum(gpu.kwh for gpu in ordered)
    return {
        "from": from_s,
        "to": to_s,
        "price_per_kwh": price_per_kwh,
        "currency": currency,
        "gpus": per_gpu,
        "hosts": hosts,
        "total_kwh": total_kwh,
        "total_cost": _cost(total_kwh, price_per_kwh),
    }
