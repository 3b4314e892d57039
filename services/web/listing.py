"""Build the API's GPU list and series identities from the file and the live feed (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from services.web.feed import ErrorRun
from services.web.rows import GpuLatest, GpuRow


def reading_json(ts: float, error: str | None, values: Iterable[Any]) -> dict[str, Any]:
    """Return a reading as the API shows it: {"ts", "error", <each metric>}."""
    return {"ts": ts, "error": error, **dict(zip(METRIC_NAMES, values, strict=True))}


def stored_gpu_json(stored: GpuLatest) -> dict[str, Any]:
    """Return one GPU of /api/v1/gpus from its row in the file."""
    gpu = stored.gpu
    return {
        "host": gpu.host,
        "gpu_index": gpu.gpu_index,
        "gpu_uuid": gpu.gpu_uuid,
        "gpu_name": gpu.gpu_name,
        "pci_bus_id": gpu.pci_bus_id,
        "driver_version": gpu.driver_version,
        "first_ts": gpu.first_ts,
        "last_ts": gpu.last_ts,
        "latest": stored.latest,
        "error_since_ts": stored.error_since_ts,
    }


def live_gpu_json(
    tick: Tick, reading: GpuReading, first_ts: float, error_since_ts: float | None
) -> dict[str, Any]:
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
        "error_since_ts": error_since_ts,
    }


def live_error_since_ts(
    tick_ts: float, reading: GpuReading, run: ErrorRun | None, stored: GpuLatest | None
) -> float | None:
    """Return since when (UTC epoch s) a GPU whose live reading is newer than the file is in error.

    The feed knows the run's start when it saw the GPU read fine before it. Otherwise the run
    may have begun before the web process started: if the file's newest reading of the GPU is in
    error too, the run is taken to go on from the file's (ticks between the two that the writer
    has not flushed yet are assumed to be in error as well).
    """
    if reading.error is None:
        return None
    since_ts = tick_ts if run is None else run.since_ts
    if run is not None and run.exact:
        return since_ts
    if (
        stored is not None
        and stored.latest is not None
        and stored.latest["error"] is not None
        and stored.error_since_ts is not None
    ):
        return min(since_ts, stored.error_since_ts)
    return since_ts


def merged_gpus(
    stored: Iterable[GpuLatest],
    ticks: Iterable[Tick],
    error_run: Callable[[str], ErrorRun | None] = lambda _uuid: None,
) -> list[dict[str, Any]]:
    """Return every GPU, the live tick's reading where it is newer than the stored one.

    So a GPU shows up before the writer's first flush. `error_run` gives the live feed's run of
    errors of a GPU (LiveFeed.error_run). Sorted by host, then index.
    """
    in_file = {item.gpu.gpu_uuid: item for item in stored}
    gpus = {uuid: stored_gpu_json(item) for uuid, item in in_file.items()}
    for tick in ticks:
        for reading in tick.gpus:
            known = gpus.get(reading.uuid)
            if known is None or known["latest"] is None or tick.ts > known["latest"]["ts"]:
                first_ts = tick.ts if known is None else known["first_ts"]
                since_ts = live_error_since_ts(
                    tick.ts, reading, error_run(reading.uuid), in_file.get(reading.uuid)
                )
                gpus[reading.uuid] = live_gpu_json(tick, reading, first_ts, since_ts)
    return sorted(gpus.values(), key=_gpu_order)


def live_readings(ticks: Iterable[Tick]) -> dict[str, tuple[Tick, GpuReading]]:
    """Return {gpu uuid: (tick, reading)} of the live feed's newest ticks."""
    return {reading.uuid: (tick, reading) for tick in ticks for reading in tick.gpus}


def live_identities(ticks: Iterable[Tick]) -> dict[str, tuple[dict[str, Any], float]]:
    """Return {uuid: (series identity, tick time in epoch seconds)} of every GPU in the ticks."""
    return {
        uuid: (
            {
                "gpu_uuid": uuid,
                "host": tick.host,
                "gpu_index": reading.index,
                "gpu_name": reading.name,
            },
            tick.ts,
        )
        for uuid, (tick, reading) in live_readings(ticks).items()
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
