"""Add processes, MIG devices and the idle-but-allocated flag to the API's GPUs (pure).

The file answers for what the writer has stored; a live tick newer than that answers for itself
(so the lists are current before the writer's next flush). A process's since_ts is when its
unbroken presence on the GPU began; on a live tick, the file's since_ts of the same process on
the GPU's newest stored list, else the live tick's time.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import msgspec

from common.messages import GpuProcess, GpuReading, Tick
from services.web.idle import Reading, flagged, is_idle_allocated
from services.web.listing import live_readings
from services.web.rows import GpuIdle, ProcessList


def live_process_list(
    tick: Tick, reading: GpuReading, stored: ProcessList | None
) -> list[dict[str, Any]] | None:
    """Return a live reading's processes as the API shows them; None when the list is unknown."""
    if reading.processes is None:
        return None
    since: dict[tuple[Any, ...], float] = {}
    for process in (stored.processes if stored is not None else None) or []:
        since[(process["pid"], process["name"], process["kind"])] = process["since_ts"]
    return [
        {
            **msgspec.to_builtins(process),
            "since_ts": since.get((process.pid, process.name, process.kind), tick.ts),
        }
        for process in reading.processes
    ]


def _holds_memory(processes: list[GpuProcess]) -> bool:
    return any(process.used_mem_bytes != 0 for process in processes)


def add_gpu_extras(
    gpus: list[dict[str, Any]],
    stored: Iterable[GpuIdle],
    ticks: Iterable[Tick],
    util_pct: float,
    idle_after_s: float,
) -> list[dict[str, Any]]:
    """Add "processes", "mig_devices" and "idle" to each GPU entry of /api/v1/gpus; return them.

    idle: None, or {"since_ts", "processes"} when the GPU has been idle but allocated for at
    least idle_after_s (services/web/idle.py).
    """
    in_file = {item.gpu.gpu_uuid: item for item in stored}
    live = live_readings(ticks)
    for entry in gpus:
        uuid = entry["gpu_uuid"]
        item = in_file.get(uuid)
        stored_list = None if item is None else item.processes
        stored_ts = None if stored_list is None else stored_list.ts
        tick, reading = live.get(uuid, (None, None))
        processes: list[dict[str, Any]] | None
        if tick is not None and reading is not None and (stored_ts is None or tick.ts > stored_ts):
            processes = live_process_list(tick, reading, stored_list)
            current = Reading(
                tick.ts,
                reading.util_gpu_pct,
                reading.mem_used_bytes,
                reading.mem_total_bytes,
                reading.error,
            )
            known = reading.processes is not None
            held = known and _holds_memory(reading.processes or [])
            since_ts = None
            if is_idle_allocated(current, util_pct, known, held):
                run_ts = None if item is None else item.run_since_ts
                since_ts = tick.ts if run_ts is None else run_ts
            latest_ts = tick.ts
        else:
            processes = None if stored_list is None else stored_list.processes
            since_ts = None if item is None else item.run_since_ts
            latest_ts = stored_ts if stored_ts is not None else 0.0
        entry["processes"] = processes
        entry["mig_devices"] = (
            [] if reading is None else [msgspec.to_builtins(mig) for mig in reading.mig_devices]
        )
        entry["idle"] = (
            {"since_ts": since_ts, "processes": processes or []}
            if flagged(since_ts, latest_ts, idle_after_s)
            else None
        )
    return gpus
