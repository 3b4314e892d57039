"""Fan each live message out to every websocket, so that one slow browser never delays the rest.

A message is framed once (an RFC 6455 text frame: a server's frames are unmasked, and the live
websockets are uncompressed, so every client gets the same bytes) and written to each client's
connection in turn, with no task and no queue per client: a client that reads along takes the
frame into its socket at once. What a client has not taken stays in its connection's write
buffer, the only queue there is; publish() never awaits. A client that still has more than
`buffer_bytes` unsent when a message comes has fallen behind: it is dropped and closed in the
background (code 1013, try again later: the page reconnects and fills the gap from the history).
So a slow client holds at most buffer_bytes plus one message.

The frames go straight to the connection's transport, beside aiohttp's own writer (which still
sends the pings, pongs and the close frame): each of ours is one whole frame written in one
call, on the event loop's thread, so the two never interleave inside a frame; and none is
written once aiohttp has begun to close the websocket (ws.closed), so nothing follows a close.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from contextlib import suppress
from dataclasses import dataclass

from aiohttp import WSCloseCode, web

logger = logging.getLogger(__name__)

SEND_BUFFER_BYTES = 1 << 20
CLOSE_TIMEOUT_S = 2.0
_TEXT_FIN = 0x81  # FIN, opcode 1 (text), no RSV bits: not compressed
_SHORT_LIMIT = 126  # payload lengths below this fit in the second byte
_MEDIUM_LIMIT = 1 << 16  # below this, a 16-bit length follows (126); else a 64-bit one (127)


def text_frame(text: str) -> bytes:
    """Return text as one unmasked, uncompressed websocket text frame (RFC 6455 section 5.2)."""
    payload = text.encode()
    length = len(payload)
    if length < _SHORT_LIMIT:
        header = struct.pack("!BB", _TEXT_FIN, length)
    elif length < _MEDIUM_LIMIT:
        header = struct.pack("!BBH", _TEXT_FIN, 126, length)
    else:
        header = struct.pack("!BBQ", _TEXT_FIN, 127, length)
    return header + payload


@dataclass(frozen=True)
class _Client:
    ws: web.WebSocketResponse
    transport: asyncio.Transport
    peer: str


class Hub:
    """The connected websockets; each may hold at most buffer_bytes unsent before it is dropped."""

    def __init__(
        self,
        *,
        buffer_bytes: int = SEND_BUFFER_BYTES,
        close_timeout_s: float = CLOSE_TIMEOUT_S,
    ) -> None:
        self._buffer_bytes = buffer_bytes
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
        """Add a prepared websocket; first_message (then more) is sent before any publish().

        A websocket whose connection is already gone (no transport) is not added: its handler's
        receive loop ends at once.
        """
        if transport is None or transport.is_closing():
            return
        client = _Client(ws, transport, peer)
        for message in (first_message, *more):
            transport.write(text_frame(message))
        self._clients[ws] = client

    def leave(self, ws: web.WebSocketResponse) -> None:
        """Forget a websocket whose handler is ending."""
        self._clients.pop(ws, None)

    def publish(self, message: str) -> None:
        """Write the same frame to every client; drop a client that has fallen behind."""
        frame = text_frame(message)
        limit_bytes = self._buffer_bytes
        behind: list[_Client] = []
        for client in self._clients.values():
            transport = client.transport
            if client.ws.closed or transport.is_closing():
                continue  # closing: its handler ends and calls leave()
            if transport.get_write_buffer_size() > limit_bytes:
                behind.append(client)
            else:
                transport.write(frame)
        for client in behind:
            self._drop(client)

    async def close_all(self, code: WSCloseCode, message: bytes) -> None:
        """Close every websocket with `code` (at shutdown), waiting at most close_timeout_s."""
        clients, self._clients = list(self._clients.values()), {}
        await asyncio.gather(*(self._close(client, code, message) for client in clients))
        if self._closers:
            await asyncio.gather(*self._closers, return_exceptions=True)

    def _drop(self, client: _Client) -> None:
        del self._clients[client.ws]
        self.dropped_clients += 1
        logger.warning(
            "dropped websocket client %s: it had more than %d bytes unsent",
            client.peer,
            self._buffer_bytes,
        )
        closer = asyncio.create_task(
            self._close(client, WSCloseCode.TRY_AGAIN_LATER, b"too slow to keep up")
        )
        self._closers.add(closer)
        closer.add_done_callback(self._closers.discard)

    async def _close(self, client: _Client, code: WSCloseCode, message: bytes) -> None:
        """Close a websocket; abort its connection if the peer does not take the close frame."""
        with suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(
                client.ws.close(code=code, message=message, drain=False), self._close_timeout_s
            )
        transport = client.transport
        if transport.get_write_buffer_size() > 0:
            transport.abort()  # a peer that reads nothing would hold the socket open for ever
