"""Fan each live message out to every websocket, so that one slow browser never delays the rest.

Each client has a small bounded queue drained by its own task. publish() never awaits: a client
whose queue is full has fallen `queue_size` messages behind, so it is dropped and closed in the
background (code 1013, try again later: the page reconnects and fills the gap from the history).
"""

from __future__ import annotations

import asyncio
import logging
from contextlib import suppress
from dataclasses import dataclass, field

from aiohttp import WSCloseCode, web

logger = logging.getLogger(__name__)

SEND_QUEUE_SIZE = 16
CLOSE_TIMEOUT_S = 2.0


@dataclass
class _Client:
    ws: web.WebSocketResponse
    transport: asyncio.Transport | None
    peer: str
    queue: asyncio.Queue[str]
    task: asyncio.Task[None] | None = field(default=None)


class Hub:
    """The connected websockets, each with its own send queue of at most queue_size messages."""

    def __init__(
        self,
        *,
        queue_size: int = SEND_QUEUE_SIZE,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self._queue_size = queue_size
        self._close_timeout_s = close_timeout_s
        self._clients: dict[web.WebSocketResponse, _Client] = {}
        self._closers: set[asyncio.Task[None]] = set()
        self.dropped_clients = 0

    @property
    def client_count(self) -> int:
        """Return how many websockets are connected."""
        return len(self._clients)

    def join(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        peer: str,
        first_message: str,
        *more: str,
    ) -> None:
        """Add a prepared websocket; first_message (then more) is sent before any publish()."""
        client = _Client(ws, transport, peer, asyncio.Queue(maxsize=self._queue_size))
        for message in (first_message, *more):
            client.queue.put_nowait(message)
        client.task = asyncio.create_task(self._drain(client), name=f"pcw-ws-send {peer}")
        self._clients[ws] = client

    async def leave(self, ws: web.WebSocketResponse) -> None:
        """Forget a websocket whose handler is ending, and stop its sending task."""
        client = self._clients.pop(ws, None)
        if client is not None:
            await _stop(client)

    def publish(self, message: str) -> None:
        """Queue the same text for every client; drop a client whose queue is full."""
        for client in list(self._clients.values()):
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                self._drop(client)

    async def close_all(self, code: WSCloseCode, message: bytes) -> None:
        """Close every websocket with `code` (at shutdown), waiting at most close_timeout_s."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await _stop(client)
        await asyncio.gather(*(self._close(client, code, message) for client in clients))
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    def _drop(self, client: _Client) -> None:
        del self._clients[client.ws]
        if client.task is not None:
            client.task.cancel()
        self.dropped_clients += 1
        logger.warning(
            "dropped websocket client %s: it fell %d messages behind", client.peer, self._queue_size
        )
        closer = asyncio.create_task(
            self._close(client, WSCloseCode.TRY_AGAIN_LATER, b"too slow to keep up")
        )
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close(self, client: _Client, code: WSCloseCode, message: bytes) -> None:
        """Close a websocket; abort its connection if the peer does not take the close frame."""
        with suppress(TimeoutError):
            await asyncio.wait_for(
                client.ws.close(code=code, message=message, drain=False), self._close_timeout_s
            )
        transport = client.transport
        if transport is not None and transport.get_write_buffer_size() > 0:
            transport.abort()  # a peer that reads nothing would hold the socket open for ever

    @staticmethod
    async def _drain(client: _Client) -> None:
        while True:
            message = await client.queue.get()
            try:
                await client.ws.send_str(message)
            except ConnectionError:
                return  # the peer went away; the handler's receive loop ends and calls leave()


async def _stop(client: _Client) -> None:
    """Cancel a client's sending task and wait for it to end."""
    if client.task is not None:
        client.task.cancel()
        await asyncio.wait([client.task])  # unlike `await task`, never swallows our own cancel
