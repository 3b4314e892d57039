"""The live feed: the samplers' ticks over ZeroMQ, kept per host and handed on as JSON text.

Each tick is decoded once (common.messages, validated) and encoded to JSON once; the same text
goes to every websocket. A message that does not decode is counted and logged at most once per
`log_every_s`, never fatal: the feed listens to sockets anyone on the network may publish to.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager

import zmq
import zmq.asyncio

from common.messages import MAX_MESSAGE_BYTES, TOPIC, DecodeError, Tick, tick_to_json

logger = logging.getLogger(__name__)

MALFORMED_LOG_EVERY_S = 60.0
RECEIVE_RETRY_S = 1.0


class LiveFeed:
    """Keep the newest tick of each host, and pass each tick's websocket message to on_message."""

    def __init__(
        self,
        on_message: Callable[[str], None],
        *,
        log_every_s: float = MALFORMED_LOG_EVERY_S,
    ) -> None:
        self._on_message = on_message
        self._log_every_s = log_every_s
        self._latest: dict[str, Tick] = {}
        self._latest_json: dict[str, str] = {}
        self._unlogged_malformed = 0
        self._next_log_monotonic_s = 0.0
        self.received_ticks = 0
        self.malformed_messages = 0

    def latest_ticks(self) -> list[Tick]:
        """Return the newest tick of each host, sorted by host."""
        return [self._latest[host] for host in sorted(self._latest)]

    def newest_tick(self) -> Tick | None:
        """Return the newest tick of any host, or None before the first one."""
        return max(self._latest.values(), key=lambda tick: tick.ts, default=None)

    def snapshot_message(self) -> str:
        """Return the websocket snapshot: {"type": "snapshot", "ticks": [tick JSON per host]}."""
        ticks = ",".join(self._latest_json[host] for host in sorted(self._latest_json))
        return f'{{"type":"snapshot","ticks":[{ticks}]}}'

    def handle(self, frames: list[bytes]) -> bool:
        """Take one ZeroMQ message; return whether it was a valid tick.

        The message sent on is {"type": "tick", "tick": <tick JSON>}.
        """
        try:
            tick = Tick.from_frames(frames)
        except DecodeError as error:
            self._count_malformed(error)
            return False
        tick_json = tick_to_json(tick).decode()
        current = self._latest.get(tick.host)
        if current is None or tick.ts >= current.ts:
            self._latest[tick.host] = tick
            self._latest_json[tick.host] = tick_json
        self.received_ticks += 1
        self._on_message(f'{{"type":"tick","tick":{tick_json}}}')
        return True

    @asynccontextmanager
    async def listening(self, endpoints: Iterable[str]) -> AsyncIterator[None]:
        """Subscribe to every sampler endpoint and feed ticks in until the block exits."""
        context = zmq.asyncio.Context()
        socket = context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
        task: asyncio.Task[None] | None = None
        try:
            for endpoint in endpoints:
                socket.connect(endpoint)
                logger.info("listening for ticks from %s", endpoint)
            task = asyncio.create_task(self._receive(socket), name="pcw-live-feed")
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.wait([task])  # unlike `await task`, never swallows our own cancel
            socket.close(linger=0)
            context.term()

    async def _receive(self, socket: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames = await socket.recv_multipart()
            except zmq.ZMQError as error:
                logger.error("receiving ticks failed, retrying in %g s: %s", RECEIVE_RETRY_S, error)
                await asyncio.sleep(RECEIVE_RETRY_S)
                continue
            self.handle(frames)
            # A burst (every host of a hub ticks at :00) arrives without a pause: let each
            # websocket's sender take this tick before the next, so queues stay near empty.
            await asyncio.sleep(0)

    def _count_malformed(self, error: DecodeError) -> None:
        self.malformed_messages += 1
        self._unlogged_malformed += 1
        now_s = time.monotonic()
        if now_s >= self._next_log_monotonic_s:
            logger.warning(
                "dropped %d malformed message(s) from the live feed (%d in all); latest: %s",
                self._unlogged_malformed,
                self.malformed_messages,
                error,
            )
            self._unlogged_malformed = 0
            self._next_log_monotonic_s = now_s + self._log_every_s
