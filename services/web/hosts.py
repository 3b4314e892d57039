"""Which hosts a hub knows, when each was last seen, and whether it has gone stale (pure).

A host is every `host` label found in the file (the writer's gpus table) or in the live feed's
newest ticks. It is never dropped because it stops ticking: it is shown as stale, with the time
it was last seen, until the writer's retention purges its GPUs from the file.

The rule: a host is stale when its newest tick, live or stored (whichever is newer), is older
than stale_after_s(interval_s) = max(3 x interval_s, interval_s + 10 s), interval_s being the
host's own sampling interval as its newest tick states it. Three missed ticks, so one late tick
never flags a host; and at least 10 s beyond the interval, so that on short intervals the
writer's flush and a small clock difference between the host and the hub never flag one either.
While a host's newest tick is the live feed's, its age is how long ago that tick arrived here, on
the hub's own clock, so a host whose clock is off is not called stale while it ticks. A host known
only from the file is judged by its tick time, the only time there is (the hosts' clocks should
be kept in sync by NTP: tick times are shown and stored as the host stated them).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.messages import Tick
from services.web.store import GpuLatest

STALE_AFTER_INTERVALS = 3.0
STALE_GRACE_S = 10.0


def stale_after_s(interval_s: float) -> float:
    """Return how many seconds after its last tick a host sampling every interval_s is stale."""
    return max(STALE_AFTER_INTERVALS * interval_s, interval_s + STALE_GRACE_S)


def is_stale(last_seen_ts: float | None, interval_s: float, now_s: float) -> bool:
    """Return whether a host last seen at last_seen_ts (epoch s) is stale at now_s.

    A host with no tick at all (None) is stale.
    """
    return last_seen_ts is None or now_s - last_seen_ts > stale_after_s(interval_s)


@dataclass
class HostState:
    """One host: its newest tick time (UTC epoch s), its interval and its GPUs' UUIDs."""

    host: str
    last_seen_ts: float | None
    interval_s: float
    gpu_uuids: set[str] = field(default_factory=set)
    stale: bool = False

    def to_json(self) -> dict[str, Any]:
        """Return the host as GET /api/v1/hosts lists it."""
        return {
            "host": self.host,
            "last_seen_ts": self.last_seen_ts,
            "stale": self.stale,
            "interval_s": self.interval_s,
            "gpu_count": len(self.gpu_uuids),
        }


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
        if state.last_seen_ts is None or tick.ts >= state.last_seen_ts:
            state.last_seen_ts, state.interval_s = tick.ts, tick.interval_s
            live_ts[tick.host] = tick.ts
    for state in hosts.values():
        arrived_s = received_s.get(state.host)
        if arrived_s is not None and live_ts.get(state.host) == state.last_seen_ts:
            state.stale = is_stale(arrived_s, state.interval_s, now_s)
        else:
            state.stale = is_stale(state.last_seen_ts, state.interval_s, now_s)
    return dict(sorted(hosts.items()))


def mark_gpus(gpus: Iterable[dict[str, Any]], hosts: dict[str, HostState]) -> None:
    """Add "host_stale" and "host_last_seen_ts" to each GPU entry of /api/v1/gpus, in place."""
    for gpu in gpus:
        state = hosts.get(gpu["host"])
        gpu["host_stale"] = True if state is None else state.stale
        gpu["host_last_seen_ts"] = None if state is None else state.last_seen_ts
