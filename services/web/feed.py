"""The live feed: the samplers' ticks over ZeroMQ, kept per host and handed on as JSON text.

Each tick is decoded once (common.messages, validated) and its websocket message encoded once
(services/web/shapes.py's TickMessage: its GPUs in the same shape as /api/v1/gpus, built by
services/web/fleet.py from the feed alone); the same text goes to every websocket. A message
that does not decode is counted and logged at most once per `log_every_s`, never fatal: the
feed listens to sockets anyone on the network may publish to.

A frame over MAX_MESSAGE_BYTES (the socket's ZMQ_MAXMSGSIZE) never reaches us: libzmq treats it
as a protocol error, drops the connection and, unlike after a network error, never reconnects it.
A socket monitor sees that (a disconnect with no retry after it); the feed counts it as a
malformed message and connects to that sampler again, so one bad message never ends the feed.

The feed also follows each GPU's errors ("GPU is lost", or NVML down on the whole host): for a GPU
in error, since when, as far as the ticks it has received tell (ErrorRun).

Every message says, beside the ticks, whether their hosts are stale (shapes.Host), as the API
would say at that moment; services/web/stale_watch.py says it when a
host goes stale between ticks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass

import msgspec
import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from common.messages import TOPIC, DecodeError, Tick
from common.throttle import ThrottledLog
from services.transport.curve import HubKeys
from services.transport.curve import gate as curve_gate
from services.transport.relink import (
    BROKEN_TEXT,
    MONITOR_EVENTS,
    RESTORE_AFTER_S,
    Breaches,
    relink,
)
from services.transport.sockets import RECEIVE_RETRY_S, hub_socket, receive_each
from services.web.fleet import Live, build_fleet, live_host_states
from services.web.health_watch import HealthWatch
from services.web.hosts import HostState
from services.web.shapes import LiveTick, SnapshotMessage, TickMessage

logger = logging.getLogger(__name__)

MALFORMED_LOG_EVERY_S = 60.0
_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class ErrorRun:
    """A GPU's current unbroken run of errored readings, as far as the live feed has seen it.

    since_ts: the first errored tick of the run the feed received (UTC epoch seconds).
    exact: the feed received an error-free reading of the GPU just before, so since_ts is the
    run's true start; when False the run may have begun before the feed started listening.
    """

    since_ts: float
    exact: bool


def _follows(tick: Tick, current: Tick) -> bool:
    """Return whether tick replaces current as its host's newest.

    By the run's own count, not by time, so that a host's clock stepped back does not freeze its
    live view; a new sampler run replaces the old one. Time only breaks a tie of count.
    """
    if tick.sampler_id != current.sampler_id:
        return True
    return tick.seq > current.seq or (tick.seq == current.seq and tick.ts >= current.ts)


class LiveFeed:
    """Keep the newest tick of each host, and pass each tick's websocket message to on_message."""

    def __init__(
        self,
        on_message: Callable[[str], None],
        *,
        log_every_s: float = MALFORMED_LOG_EVERY_S,
        restore_after_s: float = RESTORE_AFTER_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._on_message = on_message
        self._clock = clock
        # When each host's newest tick arrived, on this machine's clock (UTC epoch s).
        self._received_s: dict[str, float] = {}
        self._restore_after_s = restore_after_s
        self._latest: dict[str, Tick] = {}
        # Per GPU UUID in a host's newest tick: its error run, None while it reads fine.
        self._error_runs: dict[str, ErrorRun | None] = {}
        self.health = HealthWatch()
        self._malformed_log = ThrottledLog(logger, log_every_s)
        self.received_ticks = 0
        self.malformed_messages = 0
        self.restored_connections = 0
        self.internal_errors = 0

    def latest_ticks(self) -> list[Tick]:
        """Return the newest tick of each host, sorted by host."""
        return [self._latest[host] for host in sorted(self._latest)]

    def received_s(self) -> dict[str, float]:
        """Return when each host's newest tick arrived here (UTC epoch s, this machine's clock).

        A host's own clock may be off: its age is judged by this, not by its ticks' times.
        """
        return dict(self._received_s)

    def error_run(self, gpu_uuid: str) -> ErrorRun | None:
        """Return the GPU's current run of errors, None when its newest live reading is fine."""
        return self._error_runs.get(gpu_uuid)

    def host_states(self, now_s: float | None = None) -> dict[str, HostState]:
        """Return the live hosts, each judged stale or not at now_s (default: this feed's clock)."""
        now_s = self._clock() if now_s is None else now_s
        return live_host_states(self._latest.values(), self._received_s, now_s)

    def live_tick(self, tick: Tick, now_s: float) -> LiveTick:
        """Return a tick as the websocket sends it, its GPUs as this feed alone knows them."""
        live = Live([tick], self._received_s, self.error_run, self.health)
        gpus = build_fleet((), live, now_s, tick.interval_s).gpus
        return LiveTick(
            tick.host,
            tick.sampler_id,
            tick.seq,
            tick.ts,
            tick.interval_s,
            tick.driver_version,
            tick.error,
            gpus,
            tick.cuda_version,
        )

    def snapshot_message(self) -> str:
        """Return the websocket snapshot (shapes.SnapshotMessage): each host's newest tick."""
        now_s = self._clock()
        ticks = [self.live_tick(tick, now_s) for tick in self.latest_ticks()]
        hosts = [state.public() for state in self.host_states(now_s).values()]
        return _ENCODER.encode(SnapshotMessage(ticks, hosts)).decode()

    def handle(self, frames: list[bytes]) -> bool:
        """Take one ZeroMQ message; return whether it was a valid tick.

        The message sent on is a shapes.TickMessage: the tick, and its host's state.
        """
        try:
            tick = Tick.from_frames(frames)
        except DecodeError as error:
            self._count_malformed(str(error))
            return False
        now_s = self._clock()
        current = self._latest.get(tick.host)
        if current is None or _follows(tick, current):
            self._follow_errors(tick, current)
            self.health.follow(tick, current)
            self._latest[tick.host] = tick
            self._received_s[tick.host] = now_s
        self.received_ticks += 1
        # Its host's state as the API would give it now (stale only for an outdated tick).
        state = live_host_states([self._latest[tick.host]], self._received_s, now_s)[tick.host]
        message = TickMessage(self.live_tick(tick, now_s), state.public())
        self._on_message(_ENCODER.encode(message).decode())
        return True

    @asynccontextmanager
    async def listening(
        self, endpoints: Iterable[str], keys: HubKeys | None = None
    ) -> AsyncIterator[None]:
        """Subscribe to every sampler endpoint and feed ticks in until the block exits.

        With keys, the socket is a CURVE server and the gate lets in only the listed samplers.
        """
        context = zmq.asyncio.Context()
        gate = AsyncExitStack()
        gate.enter_context(curve_gate(context, keys))  # before any connection
        socket = hub_socket(context, zmq.SUB, keys, topic=TOPIC)
        monitor: zmq.asyncio.Socket | None = None
        tasks: list[asyncio.Task[None]] = []
        try:
            monitor = socket.get_monitor_socket(MONITOR_EVENTS)
            connected = []
            for endpoint in endpoints:
                socket.connect(endpoint)
                connected.append(endpoint)
                logger.info("listening for ticks from %s", endpoint)
            tasks.append(
                asyncio.create_task(
                    receive_each(socket, self._take, "ticks", logger), name="pcw-live-feed"
                )
            )
            tasks.append(
                asyncio.create_task(
                    self._watch(socket, monitor, frozenset(connected)), name="pcw-live-feed-monitor"
                )
            )
            yield
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks)  # unlike `await task`, never swallows our own cancel
            if monitor is not None:
                socket.disable_monitor()
                monitor.close(linger=0)
            socket.close(linger=0)
            await gate.aclose()
            context.term()

    def _take(self, frames: list[bytes]) -> None:
        try:
            self.handle(frames)
        except Exception:
            # A bug, never bad input (handle() turns that into a count): log it and go on,
            # for a feed task that died here would silently end the live view for good.
            self.internal_errors += 1
            logger.exception("handling a message from the live feed failed")

    async def _watch(
        self, socket: zmq.asyncio.Socket, monitor: zmq.asyncio.Socket, endpoints: frozenset[str]
    ) -> None:
        """Connect again to a sampler whose connection libzmq dropped without a retry."""
        loop = asyncio.get_running_loop()
        breaches = Breaches(endpoints, self._restore_after_s)
        while True:
            wait_ms = None
            if (due_s := breaches.next_due_s()) is not None:
                wait_ms = max(0, math.ceil((due_s - loop.time()) * 1000))
            try:
                if await monitor.poll(wait_ms):
                    breaches.take(
                        parse_monitor_message(await monitor.recv_multipart()), loop.time()
                    )
            except zmq.ZMQError as error:
                logger.error("watching the live feed's connections failed: %s", error)
                await asyncio.sleep(RECEIVE_RETRY_S)
                continue
            for endpoint in breaches.due(loop.time()):
                self._restore(socket, endpoint)

    def _restore(self, socket: zmq.asyncio.Socket, endpoint: str) -> None:
        self.restored_connections += 1
        self._count_malformed(f"{endpoint} {BROKEN_TEXT}")
        relink(socket, endpoint)

    def _follow_errors(self, tick: Tick, previous: Tick | None) -> None:
        """Update each GPU's error run from the host's new newest tick."""
        if previous is not None:
            kept = {reading.uuid for reading in tick.gpus}
            for reading in previous.gpus:
                if reading.uuid not in kept:
                    self._error_runs.pop(reading.uuid, None)  # so that the map stays bounded
        for reading in tick.gpus:
            if reading.error is None:
                self._error_runs[reading.uuid] = None
            elif reading.uuid not in self._error_runs:
                self._error_runs[reading.uuid] = ErrorRun(tick.ts, exact=False)
            elif self._error_runs[reading.uuid] is None:
                self._error_runs[reading.uuid] = ErrorRun(tick.ts, exact=True)

    def _count_malformed(self, reason: str) -> None:
        self.malformed_messages += 1
        self._malformed_log.log(
            "malformed",
            logging.WARNING,
            "dropped a malformed message from the live feed (%d in all): %s",
            self.malformed_messages,
            reason,
        )
