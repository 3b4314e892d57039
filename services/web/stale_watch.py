"""Tell every websocket the moment a live host goes stale, so that the page shows what the API says.

A tick's own message says its host is fresh; nothing would say it went stale, since a stale host
sends nothing. The watch wakes when the next live host is due to go stale (and at least every
max_wait_s, for hosts that appear meanwhile) and sends a shapes.HostsMessage of each host that
went stale since it last looked: the same judgement, at the same moment, as /api/v1/hosts,
/healthz and /metrics.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import msgspec

from services.web.feed import LiveFeed
from services.web.hosts import HostState
from services.web.shapes import HostsMessage

MAX_WAIT_S = 1.0
# Wake this much after a host's due moment: the rule calls it stale only after that moment.
PAST_DUE_S = 0.001


def hosts_message(states: list[HostState]) -> str:
    """Return the websocket message {"type": "hosts", "hosts": [shapes.Host]}."""
    return msgspec.json.encode(HostsMessage([state.public() for state in states])).decode()


class StaleWatch:
    """Send each live host's turn to stale to the websockets, once per last tick."""

    def __init__(
        self,
        feed: LiveFeed,
        publish: Callable[[str], None],
        *,
        clock: Callable[[], float] = time.time,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        self._feed = feed
        self._publish = publish
        self._clock = clock
        self._max_wait_s = max_wait_s
        # host -> the last_seen_ts it was said to be stale at; a host ticking again is dropped.
        self._told: dict[str, float | None] = {}

    def step(self) -> float:
        """Send the hosts gone stale since the last step; return the seconds to the next step."""
        now_s = self._clock()
        states = self._feed.host_states(now_s)
        stale = [state for state in states.values() if state.stale]
        newly = [
            state
            for state in stale
            if state.host not in self._told or self._told[state.host] != state.last_seen_ts
        ]
        self._told = {state.host: state.last_seen_ts for state in stale}
        if newly:
            self._publish(hosts_message(newly))
        due = [s.stale_at_ts for s in states.values() if not s.stale and s.stale_at_ts is not None]
        wait_s = min(due, default=now_s + self._max_wait_s) - now_s + PAST_DUE_S
        return max(PAST_DUE_S, min(self._max_wait_s, wait_s))

    async def run(self) -> None:
        """Step until cancelled."""
        while True:
            await asyncio.sleep(self.step())
