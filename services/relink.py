"""Connect again to a sampler whose connection libzmq dropped for good.

A frame over ZMQ_MAXMSGSIZE is a protocol error to libzmq: it drops that connection and, unlike
after a network error, never connects again. A socket monitor shows it as a disconnect with no
retry after it. The writer and the web process both watch for that and call relink().
"""

from __future__ import annotations

import logging
from contextlib import suppress

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
