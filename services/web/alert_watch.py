"""Tell every websocket when the alerts change: the alerts now, silences and delivery counts.

The writer stores alerts as it judges the ticks; the watch reads what changes when they do (a
few small counts) every POLL_S seconds, off the event loop, and when it moved reads the alerts
now and publishes a shapes.AlertsMessage. A new websocket gets the newest such message right
after its snapshot.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

import msgspec

from services.web.alert_reads import AlertsNow, now_job, version_job
from services.web.shapes import AlertsMessage
from services.web.store import Store, StoreError

log = logging.getLogger(__name__)

POLL_S = 1.0


class AlertWatch:
    """The newest alerts message, and the loop that keeps it and the websockets current."""

    def __init__(
        self,
        store: Store,
        publish: Callable[[str], None],
        targets: int,
        clock: Callable[[], float] = time.time,
        poll_s: float = POLL_S,
    ) -> None:
        self.store = store
        self.publish = publish
        self.targets = targets
        self.clock = clock
        self.poll_s = poll_s
        self.message: str | None = None
        self.now: AlertsNow | None = None  # the newest read, for /metrics
        self._version: tuple[float, ...] | None = None

    async def look(self) -> bool:
        """Publish the alerts if they changed since the last look; return whether they did.

        Nothing is sent while the file has never held an alert, a silence or a notification,
        so that a monitor with nothing to say sends nothing.
        """
        version = await self.store.call(version_job(self.clock()), None)
        if version is None or version == self._version:
            return False
        now = await self.store.call(now_job(self.clock(), self.targets), None)
        if now is None:
            return False
        first, self._version = self._version is None, now.version
        self.now = now
        if first and not any(now.version):
            return False
        message = AlertsMessage(now.active, now.silences, now.deliveries)
        self.message = msgspec.json.encode(message).decode()
        self.publish(self.message)
        return True

    async def run(self) -> None:
        """Look every poll_s seconds until cancelled."""
        while True:
            try:
                await self.look()
            except StoreError as error:
                log.debug("cannot read the alerts now: %s", error)
            await asyncio.sleep(self.poll_s)
