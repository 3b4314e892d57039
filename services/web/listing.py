"""Build the API's GPU list and series identities from the file and the live feed (pure)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from services.web.store import GpuLatest, GpuRow


def reading_json(ts: float, error: str | None, values: Iterable[Any]) -> dict[str, Any]:
    """Return a reading as the API shows it: {"ts", "error", <each metric>}."""
    return {"ts": ts, "error": error, **dict(zip(METRIC_NAMES, values, strict=True))}


def stored_gpu_json(gpu: GpuRow, latest: dict[str, Any] | None) -> dict[str, Any]:
    """Return one GPU of /api/v1/gpus from its row in the file."""
    return {
        "host": gpu.host,
        "gpu_index": gpu.gpu_index,
        "gpu_uuid": gpu.gpu_uuid,
        "gpu_name": gpu.gpu_name,
        "pci_bus_id": gpu.pci_bus_id,
        "driver_version": gpu.driver_version,
        "first_ts": gpu.first_ts,
        "last_ts": gpu.last_ts,
        "latest": latest,
    }


def live_gpu_json(tick: Tick, reading: GpuReading, first_ts: float) -> dict[str, Any]:
    """Return one GPU of /api/v1/gpus from a live tick newer than anything in the file."""
    return {
        "host": tick.host,
        "gpu_index": reading.index,
        "gpu_uuid": reading.uuid,
        "gpu_name": reading.name,
        "pci_bus_id": reading.pci_bus_id,
        "driver_version": tick.driver_version,
        "first_ts": first_ts,
        "last_ts": tick.ts,
        "latest": reading_json(tick.ts, reading.error, reading.metric_values()),
    }


def merged_gpus(stored: Iterable[GpuLatest], ticks: Iterable[Tick]) -> list[dict[str, Any]]:
    """Return every GPU, the live tick's reading where it is newer than the stored one.

    So a GPU shows up before the writer's first flush. Sorted by host, then index.
    """
    gpus = {item.gpu.gpu_uuid: stored_gpu_json(item.gpu, item.latest) for item in stored}
    for tick in ticks:
        for reading in tick.gpus:
            known = gpus.get(reading.uuid)
            if known is None:
                gpus[reading.uuid] = live_gpu_json(tick, reading, tick.ts)
            elif known["latest"] is None or tick.ts > known["latest"]["ts"]:
                gpus[reading.uuid] = live_gpu_json(tick, reading, known["first_ts"])
    return sorted(gpus.values(), key=_gpu_order)


def live_identities(ticks: Iterable[Tick]) -> dict[str, tuple[dict[str, Any], float]]:
    """Return {uuid: (series identity, tick time in epoch seconds)} of every GPU in the ticks."""
    return {
        reading.uuid: (
            {
                "gpu_uuid": reading.uuid,
                "host": tick.host,
                "gpu_index": reading.index,
                "gpu_name": reading.name,
            },
            tick.ts,
        )
        for tick in ticks
        for reading in tick.gpus
    }


def stored_identity(gpu: GpuRow) -> dict[str, Any]:
    """Return the identity part of a history series from a GPU's row."""
    return {
        "gpu_uuid": gpu.gpu_uuid,
        "host": gpu.host,
        "gpu_index": gpu.gpu_index,
        "gpu_name": gpu.gpu_name,
    }


def _gpu_order(gpu: dict[str, Any]) -> tuple[str, int, str]:
    return gpu["host"], gpu["gpu_index"], gpu["gpu_uuid"]
