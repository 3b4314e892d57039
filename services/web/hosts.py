"""A host a hub knows: when it was last seen, and whether it has gone stale (pure).

- A host is every `host` label of the file (the writer's gpus table) or the live feed's newest
  ticks; one that stops ticking is shown stale, with when it was last seen, until retention
  purges its GPUs from the file.
- The rule is common.staleness's, with the interval its newest tick states. A host whose newest
  tick is the live feed's is aged on this machine's clock (when the tick arrived), so a host
  whose clock is off is not called stale while it ticks; one known only from the file, by its
  tick time (the only time there is).
- Every view judges hosts through services/web/fleet.py's host_states(), so a host is stale in
  /api/v1/hosts, /api/v1/gpus, /healthz, /metrics and the websocket from the same moment.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from common.staleness import is_stale, stale_since_ts
from services.web.shapes import Host


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

    def public(self) -> Host:
        """Return the host as GET /api/v1/hosts lists it (and the websocket sends it)."""
        return Host(
            self.host,
            self.last_seen_ts,
            self.stale,
            self.stale_since_ts,
            self.interval_s,
            len(self.gpu_uuids),
        )
