"""When a host, or a GPU, has gone stale: the one rule every part of pyCudaWatch judges by (pure).

A host sampling every interval_s is stale once nothing has come from it for more than
stale_after_s(interval_s) = 3 x interval_s + 10 s: three missed ticks, plus a grace that covers
the third tick's own lateness (reading many GPUs, the network, the writer's flush) and a small
difference between two machines' clocks, so that one late tick never flags a host. The interval
is the host's own, as its newest tick states it, never the judging process's setting.

The web API, /healthz, /metrics and the dashboard all take staleness from here, so that a host
is stale in each of them from the same moment.
"""

from __future__ import annotations

STALE_AFTER_INTERVALS = 3
STALE_GRACE_S = 10.0


def stale_after_s(interval_s: float) -> float:
    """Return how many seconds after its last tick a host sampling every interval_s is stale."""
    return STALE_AFTER_INTERVALS * interval_s + STALE_GRACE_S


def stale_since_ts(last_seen_s: float, interval_s: float) -> float:
    """Return the moment (epoch s, on last_seen_s's clock) a host last seen then goes stale."""
    return last_seen_s + stale_after_s(interval_s)


def is_stale(last_seen_s: float | None, interval_s: float, now_s: float) -> bool:
    """Return whether a host last seen at last_seen_s (epoch s) is stale at now_s.

    Not yet at stale_since_ts itself, from any moment after it. Never seen (None): stale.
    """
    return last_seen_s is None or now_s > stale_since_ts(last_seen_s, interval_s)
