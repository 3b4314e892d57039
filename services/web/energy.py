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

The walk is common.energy_pairs.integrate (the writer's energy buckets count with it too); the
reads are services/web/energy_reads.py's.

source per GPU: "counter" (every pair from the counter), "power" (every pair from power),
"mixed" (some of each), "none" (no pair could say: kwh and cost are null).
cost = kWh x PCW_ENERGY_PRICE_PER_KWH, null without a price.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from common.energy_pairs import EnergySums, integrate

__all__ = ["EnergySums", "GpuEnergy", "energy_report", "integrate"]

J_PER_KWH = 3_600_000.0


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
