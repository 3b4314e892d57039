"""The hub side's sockets, set up alike in the writer (sync) and the web process (async).

- Linger 0: closing never waits on a sampler that is gone.
- ZMQ_MAXMSGSIZE bounds each message before it is read; past it libzmq drops the connection
  (services.transport.relink connects again).
- With HubKeys the socket is a CURVE server, set before it connects.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import zmq

if TYPE_CHECKING:
    import zmq.asyncio

from common.messages import MAX_MESSAGE_BYTES
from services.transport.curve import HubKeys, secure_hub_socket

RECEIVE_RETRY_S = 1.0


def hub_socket(
    context: zmq.Context,
    kind: int,
    keys: HubKeys | None = None,
    *,
    topic: bytes | None = None,
    max_message_bytes: int = MAX_MESSAGE_BYTES,
    receive_queue: int | None = None,
) -> zmq.Socket:
    """Return a hub socket of kind (SUB or DEALER) that connects nowhere yet.

    topic: what a SUB subscribes to. receive_queue: messages held unread (ZMQ_RCVHWM); None
    keeps libzmq's default.
    """
    socket = context.socket(kind)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.MAXMSGSIZE, max_message_bytes)
    if receive_queue is not None:
        socket.setsockopt(zmq.RCVHWM, receive_queue)
    if topic is not None:
        socket.setsockopt(zmq.SUBSCRIBE, topic)
    secure_hub_socket(socket, keys)
    return socket


async def receive_each(
    socket: zmq.asyncio.Socket,
    handle: Callable[[list[bytes]], object],
    what: str,
    logger: logging.Logger,
) -> None:
    """Hand each message of an asyncio socket to handle, until cancelled (the web process).

    A failed receive is logged and tried again after RECEIVE_RETRY_S. After each message the
    loop yields once, so that a burst (every host of a hub ticks at :00) never holds the event
    loop: each websocket's sender takes one tick before the next arrives.
    """
    import asyncio  # here: the writer imports this module and has no event loop

    while True:
        try:
            frames = await socket.recv_multipart()
        except zmq.ZMQError as error:
            logger.error("receiving %s failed, retrying in %g s: %s", what, RECEIVE_RETRY_S, error)
            await asyncio.sleep(RECEIVE_RETRY_S)
            continue
        handle(frames)
        await asyncio.sleep(0)
