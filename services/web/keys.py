"""The web application's typed state: what create_app() builds and the handlers read."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from common.config import Config
from services.web.alert_watch import AlertWatch
from services.web.feed import LiveFeed
from services.web.hub import Hub
from services.web.idle_reads import IdleRuns
from services.web.store import Store
from services.web.writer_status import WriterStatusFeed


@dataclass
class Counters:
    """Counts the handlers keep; shown by /healthz."""

    internal_errors: int = 0


CONFIG = web.AppKey("config", Config)
STORE = web.AppKey("store", Store)
# Where each GPU's idle run stood at the last read, so that the next reads only newer readings.
IDLE_RUNS = web.AppKey("idle_runs", IdleRuns)
FEED = web.AppKey("feed", LiveFeed)
HUB = web.AppKey("hub", Hub)
COUNTERS = web.AppKey("counters", Counters)
# The wall clock (UTC epoch s) that judges staleness everywhere in the app; a test may set it.
CLOCK: web.AppKey[Callable[[], float]] = web.AppKey("clock")
WRITER = web.AppKey("writer_status", WriterStatusFeed)
# The newest alerts message for the websockets, kept current by its watch.
ALERTS = web.AppKey("alerts", AlertWatch)
