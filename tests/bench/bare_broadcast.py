"""The baseline of the live feed: a minimal aiohttp app that forwards each tick to all websockets.

    python -m tests.bench.bare_broadcast PORT ENDPOINT

It subscribes to ENDPOINT, turns each tick into the same JSON text the web process sends
({"type": "tick", "tick": ...}), encodes it once, and sends it to every websocket in turn with
aiohttp's public send_frame (so the text is not encoded again per client, as send_str would):
no per-client queue, no task per client, no snapshot, no slow-client bound; a greeting on
connect, so that a client knows it is in. The competent plain aiohttp broadcast.
"""

from __future__ import annotations

import asyncio
import sys
import weakref
from collections.abc import AsyncIterator

import msgspec
import zmq
import zmq.asyncio
from aiohttp import WSMsgType, web

from common.messages import TOPIC, Tick

SOCKETS = web.AppKey("sockets", weakref.WeakSet)
ENDPOINT = web.AppKey("endpoint", str)


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Hold a websocket in the broadcast set until it closes."""
    ws = web.WebSocketResponse(compress=False)
    await ws.prepare(request)
    request.app[SOCKETS].add(ws)
    await ws.send_str('{"type":"hello"}')
    async for _message in ws:
        pass
    return ws


async def forward(app: web.Application) -> None:
    """Send each tick received to every websocket."""
    context = zmq.asyncio.Context()
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
    socket.connect(app[ENDPOINT])
    try:
        while True:
            tick = Tick.from_frames(await socket.recv_multipart())
            payload = b'{"type":"tick","tick":' + msgspec.json.encode(tick) + b"}"
            for ws in list(app[SOCKETS]):
                try:
                    await ws.send_frame(payload, WSMsgType.TEXT)
                except ConnectionError:
                    app[SOCKETS].discard(ws)
    finally:
        socket.close(linger=0)
        context.term()


async def _forwarding(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(forward(app))
    yield
    task.cancel()
    await asyncio.wait([task])


def main(argv: list[str] | None = None) -> int:
    """Serve on 127.0.0.1:PORT until SIGTERM."""
    port, endpoint = (argv or sys.argv[1:])[:2]
    app = web.Application()
    app[SOCKETS] = weakref.WeakSet()
    app[ENDPOINT] = endpoint
    app.cleanup_ctx.append(_forwarding)
    app.router.add_get("/ws", websocket)
    web.run_app(app, host="127.0.0.1", port=int(port), print=None, access_log=None)
    return 0


if __name__ == "__main__":
    sys.exit(main())
