"""Which hosts a hub knows, when each was last seen, and whether it has gone stale (pure).

A host is every `host` label found in the file (the writer's gpus table) or in the live feed's
newest ticks. It is never dropped because it stops ticking: it is shown as stale, with the time
it was last seen, until the writer's retention purges its GPUs from the file.

The rule is common.staleness's, with the host's own interval as its newest tick states it. While
a host's newest tick is the live feed's, its age is how long ago that tick arrived here, on the
hub's own clock, so a host whose clock is off is not called stale while it ticks. A host known
only from the file is judged by its tick time, the only time there is (the hosts' clocks should
be kept in sync by NTP: tick times are shown and stored as the host stated them).

/api/v1/hosts, /api/v1/gpus, /healthz, /metrics and the websocket all judge through
host_states(), so a host is stale in each of them from the same moment.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from common.messages import Tick
from common.staleness import is_stale, stale_since_ts
from services.web.rows import GpuLatest


@dataclass
class HostState:
    """One host: its newest tick time (UTC epoch s), its interval, GPUs' UUIDs and staleness.

    stale_at_ts: when the host goes (or went) stale unless a tick comes, in UTC epoch s on the
    clock it is judged on: the hub's for a live host, the host's own for one known only from the
    file. stale_since_ts: the same once it is stale; None while it is fresh.
    """

    host: str
    last_seen_ts: float | None
    interval_s: float
    gpu_uuids: set[str] = field(default_factory=set)
    stale: bool = False
    stale_at_ts: float | None = None
    stale_since_ts: float | None = None

    def judge(self, seen_s: float | None, now_s: float) -> None:
        """Judge the host at now_s, its newest tick seen at seen_s (epoch s, None: never)."""
        self.stale = is_stale(seen_s, self.interval_s, now_s)
        self.stale_at_ts = None if seen_s is None else stale_since_ts(seen_s, self.interval_s)
        self.stale_since_ts = self.stale_at_ts if self.stale else None

    def to_json(self) -> dict[str, Any]:
        """Return the host as GET /api/v1/hosts lists it (and the websocket sends it)."""
        return {
            "host": self.host,
            "last_seen_ts": self.last_seen_ts,
            "stale": self.stale,
            "stale_since_ts": self.stale_since_ts,
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
            state.judge(arrived_s, now_s)
        else:
            state.judge(state.last_seen_ts, now_s)
    return dict(sorted(hosts.items()))


def live_host_states(
    ticks: Iterable[Tick], received_s: Mapping[str, float], now_s: float
) -> dict[str, HostState]:
    """Return the hosts of the live feed's newest ticks alone, judged as host_states judges them."""
    return host_states((), ticks, now_s, 0.0, received_s)  # no stored GPU: no default interval


def mark_gpus(gpus: Iterable[dict[str, Any]], hosts: Mapping[str, HostState]) -> None:
    """Add each GPU's staleness to its entry of /api/v1/gpus, in place.

    "interval_s" is its host's; "stale" and "stale_since_ts" are its host's, unless the GPU has
    been missing from its host's ticks for longer than the rule allows (taken out, or no longer
    listed by the sampler), judged on the host's own tick times: then it is stale since then.
    "host_stale" and "host_last_seen_ts" say the host's own.
    """
    for gpu in gpus:
        state = hosts.get(gpu["host"])
        if state is None:
            gpu.update(interval_s=None, stale=True, stale_since_ts=None)
            gpu.update(host_stale=True, host_last_seen_ts=None)
            continue
        last_ts = gpu["last_ts"]
        gone = state.last_seen_ts is not None and is_stale(
            last_ts, state.interval_s, state.last_seen_ts
        )
        gpu["interval_s"] = state.interval_s
        gpu["stale"] = gone or state.stale
        gpu["stale_since_ts"] = (
            stale_since_ts(last_ts, state.interval_s) if gone else state.stale_since_ts
        )
        gpu["host_stale"] = state.stale
        gpu["host_last_seen_ts"] = state.last_seen_ts
