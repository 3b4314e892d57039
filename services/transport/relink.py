"""Connect again to a sampler whose connection libzmq dropped for good.

- Why: a frame over ZMQ_MAXMSGSIZE is a protocol error to libzmq; it drops that connection and,
  unlike after a network error, never connects again.
- How it shows: on the socket's monitor, a disconnect with no retry within RESTORE_AFTER_S.
- Breaches decides that from the monitor's events (the writer's sync loop and the web's async
  loop feed it); relink() connects again.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable
from contextlib import suppress
from typing import Any

import zmq

from common.messages import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

# libzmq announces its own retry right after a disconnect; none within this time means none.
RESTORE_AFTER_S = 1.0
MONITOR_EVENTS = (
    zmq.EVENT_DISCONNECTED
    | zmq.EVENT_CONNECT_RETRIED
    | zmq.EVENT_CONNECT_DELAYED
    | zmq.EVENT_CONNECTED
)
BROKEN_TEXT = (
    "broke the ZeroMQ protocol (most likely a frame over "
    f"{MAX_MESSAGE_BYTES} bytes, or CURVE keys set on one side only) and was disconnected; "
    "connecting again"
)

_EVENT_FRAME = struct.Struct("=hi")  # libzmq's first monitor frame: event id, then its value


def parse_monitor_event(frames: list[bytes]) -> dict[str, Any]:
    """Parse one monitor message as zmq.utils.monitor.parse_monitor_message does.

    Ours, because that module imports zmq.asyncio, hence asyncio and ssl: about 5 MB of RSS in
    the writer, which has no event loop.
    """
    if len(frames) != 2 or len(frames[0]) != _EVENT_FRAME.size:
        raise RuntimeError(f"invalid monitor message: {frames!r}")
    event_id, value = _EVENT_FRAME.unpack(frames[0])
    return {"event": zmq.Event(event_id), "value": zmq.Event(value), "endpoint": frames[1]}


def relink(socket: zmq.Socket, endpoint: str) -> bool:
    """Drop what libzmq may still hold of endpoint and connect to it again; return success."""
    with suppress(zmq.ZMQError):  # already forgotten by libzmq: nothing to undo
        socket.disconnect(endpoint)
    try:
        socket.connect(endpoint)
    except zmq.ZMQError as error:
        log.error("cannot connect to %s again: %s", endpoint, error)
        return False
    return True


class Breaches:
    """Which of a socket's endpoints libzmq dropped for good, from its monitor's events."""

    def __init__(self, endpoints: Iterable[str], restore_after_s: float = RESTORE_AFTER_S) -> None:
        self._endpoints = frozenset(endpoints)
        self._restore_after_s = restore_after_s
        self._due_s: dict[str, float] = {}  # endpoint -> when to connect to it again

    def take(self, event: dict[str, Any], now_s: float) -> None:
        """Take one parsed monitor event (parse_monitor_event) seen at now_s."""
        endpoint = event["endpoint"].decode(errors="replace")
        if endpoint not in self._endpoints:
            return
        if event["event"] == zmq.EVENT_DISCONNECTED:
            self._due_s[endpoint] = now_s + self._restore_after_s
        else:
            self._due_s.pop(endpoint, None)  # libzmq is retrying, or has connected

    def next_due_s(self) -> float | None:
        """Return when the next endpoint is due to be connected again, None if none is."""
        return min(self._due_s.values(), default=None)

    def due(self, now_s: float) -> list[str]:
        """Return (and forget) the endpoints to connect to again at now_s."""
        ready = [endpoint for endpoint, at_s in self._due_s.items() if at_s <= now_s]
        for endpoint in ready:
            del self._due_s[endpoint]
        return ready
