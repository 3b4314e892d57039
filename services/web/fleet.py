"""Merge the file and the live feed, once per request, into the public GPU and host views (pure).

- One rule decides whether a live tick answers for a GPU or a host instead of the file:
  live_answers(), a tie going to the live tick (see there).
- build_fleet() gives every GPU as a shapes.Gpu and every host as a HostState; /api/v1/gpus,
  /healthz and the websocket (the live feed alone) only encode what it built; /api/v1/hosts
  takes the hosts alone from host_states(), which build_fleet() judges them by.
- A process's since_ts is when its unbroken presence on the GPU began: the file's for a process
  on the GPU's newest stored list, else the live tick's time (null where only the feed answers).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from common.health import xid_text
from common.idle import Reading as IdleReading
from common.idle import flagged, is_idle_allocated
from common.messages import GpuReading, Tick, XidEvent
from common.staleness import is_stale, stale_since_ts
from services.web.health_watch import HealthWatch
from services.web.hosts import HostState
from services.web.rows import GpuIdle, GpuLatest, ProcessList
from services.web.shapes import (
    Finding,
    Gpu,
    Idle,
    Limits,
    Process,
    Reading,
    Xid,
    health_shape,
    limits_shape,
)

if TYPE_CHECKING:
    from services.web.feed import ErrorRun

# A card shows a GPU's last XID as a finding for a day after it happened.
XID_SHOWN_S = 24 * 3600.0


def live_answers(live_ts: float, stored_ts: float | None) -> bool:
    """Return whether a live tick at live_ts answers instead of the file's newest at stored_ts.

    At least as new (>=). A tie is the same tick of the same host: the writer has stored what the
    feed received. The feed's copy holds all the file's does and what only the feed knows: when
    it arrived on this machine's clock (which judges a host's staleness), its MIG devices and the
    exact start of an error run. So a tie goes to the live tick, for GPUs and hosts alike.
    """
    return stored_ts is None or live_ts >= stored_ts


@dataclass(frozen=True)
class Live:
    """What the live feed knows: newest tick per host, when each arrived, each GPU's error run."""

    ticks: list[Tick]
    received_s: Mapping[str, float]
    error_run: Callable[[str], ErrorRun | None]
    health: HealthWatch = field(default_factory=HealthWatch)


@dataclass(frozen=True)
class Idleness:
    """The idle-but-allocated settings and the file's idle state per GPU (store.idle)."""

    stored: Iterable[GpuIdle]
    util_pct: float
    after_s: float


@dataclass(frozen=True)
class Fleet:
    """Every GPU (sorted by host, index, UUID) and every host (by name), as of now_s."""

    gpus: list[Gpu]
    hosts: dict[str, HostState]


def live_readings(ticks: Iterable[Tick]) -> dict[str, tuple[Tick, GpuReading]]:
    """Return {gpu uuid: (tick, reading)} of the live feed's newest ticks, the newest per UUID."""
    readings: dict[str, tuple[Tick, GpuReading]] = {}
    for tick in ticks:
        for reading in tick.gpus:
            known = readings.get(reading.uuid)
            if known is None or live_answers(tick.ts, known[0].ts):
                readings[reading.uuid] = (tick, reading)
    return readings


def live_process_list(
    tick: Tick, reading: GpuReading, stored: ProcessList | None, unknown_since: float | None
) -> list[Process] | None:
    """Return a live reading's processes; since_ts the file's, else unknown_since."""
    if reading.processes is None:
        return None
    since: dict[tuple[Any, ...], float] = {}
    for process in (stored.processes if stored is not None else None) or []:
        since[(process["pid"], process["name"], process["kind"])] = process["since_ts"]
    return [
        Process(
            **msgspec.structs.asdict(process),
            since_ts=since.get((process.pid, process.name, process.kind), unknown_since),
        )
        for process in reading.processes
    ]


def live_error_since_ts(
    tick_ts: float, reading: GpuReading, run: ErrorRun | None, stored: GpuLatest | None
) -> float | None:
    """Return since when (UTC epoch s) a GPU whose live reading answers is in error.

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


def stored_processes(stored: ProcessList | None) -> list[Process] | None:
    if stored is None or stored.processes is None:
        return None
    return msgspec.convert(stored.processes, list[Process])


def _holds_memory(reading: GpuReading) -> bool:
    return any(process.used_mem_bytes != 0 for process in reading.processes or [])


def _live_idle_since(
    tick: Tick, reading: GpuReading, item: GpuIdle | None, util_pct: float
) -> float | None:
    current = IdleReading(
        tick.ts,
        reading.util_gpu_pct,
        reading.mem_used_bytes,
        reading.mem_total_bytes,
        reading.error,
    )
    known = reading.processes is not None
    if not is_idle_allocated(current, util_pct, known, known and _holds_memory(reading)):
        return None
    return tick.ts if item is None or item.run_since_ts is None else item.run_since_ts


# The fields of shapes.Gpu that a stored GPU's row (rows.GpuRow) holds under the same names.
STORED_IDENTITY = Gpu.__struct_fields__[: Gpu.__struct_fields__.index("latest")]


def _gpu(
    stored: GpuLatest | None,
    idle_item: GpuIdle | None,
    live: tuple[Tick, GpuReading] | None,
    feed: Live,
    idleness: Idleness | None,
    hosts: Mapping[str, HostState],
) -> Gpu:
    """Return one GPU from the file's row and the live reading, whichever answers."""
    stored_ts = None if stored is None or stored.latest is None else stored.latest["ts"]
    stored_list = None if idle_item is None else idle_item.processes
    process_ts = None if stored_list is None else stored_list.ts
    idle_since: float | None = None
    if live is not None and live_answers(live[0].ts, stored_ts):
        tick, reading = live
        ident = {
            "host": tick.host,
            "gpu_index": reading.index,
            "gpu_uuid": reading.uuid,
            "gpu_name": reading.name,
            "pci_bus_id": reading.pci_bus_id,
            "driver_version": tick.driver_version,
            "first_ts": tick.ts if stored is None else stored.gpu.first_ts,
            "last_ts": tick.ts,
        }
        latest = Reading(tick.ts, reading.error, *reading.metric_values())
        error_since_ts = live_error_since_ts(tick.ts, reading, feed.error_run(reading.uuid), stored)
        unknown_since = None if idleness is None else tick.ts
        processes = live_process_list(tick, reading, stored_list, unknown_since)
        if idleness is not None:
            idle_since = _live_idle_since(tick, reading, idle_item, idleness.util_pct)
        idle_ts = tick.ts
        health = live_health(tick, reading, feed.health)
    else:
        assert stored is not None  # a GPU is in the file or in the feed
        ident = {name: getattr(stored.gpu, name) for name in STORED_IDENTITY}
        latest = None if stored.latest is None else Reading(**stored.latest)
        error_since_ts = stored.error_since_ts
        processes = stored_processes(stored_list)
        idle_since = None if idle_item is None else idle_item.run_since_ts
        idle_ts = process_ts if process_ts is not None else 0.0
        health = {
            "cuda_version": stored.gpu.cuda_version,
            "health": None,
            "limits": stored_limits(stored.gpu.limits),
            "findings": [],
        }
    health["last_xid"] = newest_xid(
        None if stored is None else stored.last_xid,
        None if live is None else feed.health.known_xid(live[1].uuid),
    )
    health["findings"] = xid_finding(health["last_xid"], ident["last_ts"]) + health["findings"]
    staleness = gpu_staleness(ident["host"], ident["last_ts"], hosts)
    idle = None
    if idleness is not None and flagged(idle_since, idle_ts, idleness.after_s):
        assert idle_since is not None
        idle = Idle(idle_since, processes or [])
    return Gpu(
        **ident,
        latest=latest,
        error_since_ts=error_since_ts,
        **staleness,
        processes=processes,
        mig_devices=[] if live is None else list(live[1].mig_devices),
        idle=idle,
        **health,
    )


def live_health(tick: Tick, reading: GpuReading, watch: HealthWatch) -> dict[str, Any]:
    """Return the health fields of a GPU's shape from its live reading (last_xid apart)."""
    return {
        "cuda_version": tick.cuda_version,
        "health": None if reading.health is None else health_shape(reading.health),
        "limits": limits_shape(reading.limits),
        "findings": watch.held(tick, reading),
    }


def stored_limits(text: str | None) -> Limits | None:
    """Return the limits the writer stored with the GPU's identity, None if none or unreadable."""
    if text is None:
        return None
    try:
        return msgspec.json.decode(text, type=Limits)
    except msgspec.DecodeError:  # a file edited by hand: no limits rather than no answer
        return None


def newest_xid(stored: tuple[float, int] | None, live: XidEvent | None) -> Xid | None:
    """Return the newer of the file's newest XID (ts, code) and the feed's, None when neither."""
    known = [] if stored is None else [stored]
    if live is not None:
        known.append((live.ts, live.code))
    if not known:
        return None
    ts, code = max(known)
    return Xid(ts, code, xid_text(code))


def xid_finding(xid: Xid | None, last_ts: float) -> list[Finding]:
    """Return the XID as a finding while it is at most XID_SHOWN_S older than the GPU's reading."""
    if xid is None or last_ts - xid.ts > XID_SHOWN_S:
        return []
    return [Finding("xid", xid.text, xid.ts)]


def build_fleet(
    stored: Iterable[GpuLatest],
    feed: Live,
    now_s: float,
    default_interval_s: float,
    idleness: Idleness | None = None,
) -> Fleet:
    """Return every GPU and host of the file and the live feed, the newer answering, at now_s.

    Without idleness, no process list is the file's and no GPU is flagged idle; a live process
    not on the file's list then has since_ts null (the websocket: the feed alone answers).
    """
    stored = list(stored)
    hosts = host_states(stored, feed.ticks, now_s, default_interval_s, feed.received_s)
    in_file = {item.gpu.gpu_uuid: item for item in stored}
    idle = {} if idleness is None else {item.gpu.gpu_uuid: item for item in idleness.stored}
    live = live_readings(feed.ticks)
    gpus = [
        _gpu(in_file.get(uuid), idle.get(uuid), live.get(uuid), feed, idleness, hosts)
        for uuid in in_file.keys() | live.keys()
    ]
    gpus.sort(key=lambda gpu: (gpu.host, gpu.gpu_index, gpu.gpu_uuid))
    return Fleet(gpus, hosts)


def host_states(
    stored: Iterable[GpuLatest],
    ticks: Iterable[Tick],
    now_s: float,
    default_interval_s: float,
    received_s: Mapping[str, float] | None = None,
) -> dict[str, HostState]:
    """Return every host of the file and the live feed by name, each marked stale or not.

    The interval is that of the host's newest tick: the live tick's, else the one the writer
    stored with the GPU seen last; default_interval_s (this process's own setting) only for a
    file written before intervals were stored. received_s: when each host's live tick arrived
    (LiveFeed.received_s), which judges the age of a host whose newest tick is the live one.
    """
    received_s = received_s or {}
    live_ts: dict[str, float] = {}
    hosts: dict[str, HostState] = {}
    for item in stored:
        gpu = item.gpu
        state = hosts.setdefault(gpu.host, HostState(gpu.host, None, default_interval_s))
        state.gpu_uuids.add(gpu.gpu_uuid)
        if state.last_seen_ts is None or gpu.last_ts > state.last_seen_ts:
            state.last_seen_ts = gpu.last_ts
            state.interval_s = gpu.interval_s or default_interval_s
    for tick in ticks:
        state = hosts.setdefault(tick.host, HostState(tick.host, None, tick.interval_s))
        state.gpu_uuids.update(reading.uuid for reading in tick.gpus)
        if live_answers(tick.ts, state.last_seen_ts):
            state.last_seen_ts, state.interval_s = tick.ts, tick.interval_s
            live_ts[tick.host] = tick.ts
    for state in hosts.values():
        arrived_s = received_s.get(state.host)
        if arrived_s is not None and live_ts.get(state.host) == state.last_seen_ts:
            state.judge(arrived_s, now_s)
        else:
            state.judge(state.last_seen_ts, now_s)
    return dict(sorted(hosts.items()))


def live_host_states(
    ticks: Iterable[Tick], received_s: Mapping[str, float], now_s: float
) -> dict[str, HostState]:
    """Return the hosts of the live feed's newest ticks alone, judged as host_states judges them."""
    return host_states((), ticks, now_s, 0.0, received_s)  # no stored GPU: no default interval


def gpu_staleness(host: str, last_ts: float, hosts: Mapping[str, HostState]) -> dict[str, Any]:
    """Return a GPU's staleness fields of shapes.Gpu.

    "interval_s" is its host's; "stale" and "stale_since_ts" are its host's, unless the GPU has
    been missing from its host's ticks for longer than the rule allows (taken out, or no longer
    listed by the sampler), judged on the host's own tick times: then it is stale since then.
    "host_stale" and "host_last_seen_ts" say the host's own.
    """
    state = hosts[host]  # build_fleet judges the host of every GPU it lists
    gone = state.last_seen_ts is not None and is_stale(
        last_ts, state.interval_s, state.last_seen_ts
    )
    return {
        "interval_s": state.interval_s,
        "stale": gone or state.stale,
        "stale_since_ts": stale_since_ts(last_ts, state.interval_s)
        if gone
        else state.stale_since_ts,
        "host_stale": state.stale,
        "host_last_seen_ts": state.last_seen_ts,
    }
