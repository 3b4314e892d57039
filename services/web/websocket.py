"""GET /ws: a snapshot of the newest tick of each host on connect, then every tick as it comes."""

from __future__ import annotations

from urllib.parse import urlsplit

from aiohttp import hdrs, web

from services.web.keys import ALERTS, FEED, HUB
from services.web.replies import error_reply

WS_MAX_MESSAGE_BYTES = 4096  # browsers have nothing to say; anything larger closes the socket
WS_HEARTBEAT_S = 30.0
WS_CLOSE_TIMEOUT_S = 2.0


def origin_allowed(origin: str | None, host: str | None, scheme: str) -> bool:
    """Return whether a websocket from `origin` may connect to a server reached as scheme://host.

    No Origin header: a client that is not a browser, allowed. Otherwise the origin's scheme and
    host:port must be the page's, so that another site open in the browser, or the same host
    over the other scheme, cannot read the feed.
    """
    if origin is None:
        return True
    if not host:
        return False
    try:
        parts = urlsplit(origin.strip())
    except ValueError:
        return False
    return (
        bool(parts.netloc)
        and parts.scheme.lower() == scheme.lower()
        and parts.netloc.lower() == host.strip().lower()
    )


def page_scheme(request: web.Request) -> str:
    """Return the scheme the page was served over: a TLS proxy's X-Forwarded-Proto, if it sent one.

    A browser's websocket cannot set that header, so a page of another site cannot forge it.
    """
    forwarded = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    return forwarded if forwarded in ("http", "https") else request.scheme


async def websocket(request: web.Request) -> web.StreamResponse:
    """Send the snapshot and then each tick; ignore what the client sends."""
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin_allowed(origin, request.host, page_scheme(request)):
        return error_reply(f"websocket from origin {origin!r} is not allowed", 403)
    ws = web.WebSocketResponse(
        compress=False,  # deflate doubles latency and costs ~220 KB per client
        max_msg_size=WS_MAX_MESSAGE_BYTES,
        heartbeat=WS_HEARTBEAT_S,
        timeout=WS_CLOSE_TIMEOUT_S,
    )
    await ws.prepare(request)
    hub = request.app[HUB]
    # No await between the snapshot and join(): no tick can fall between them.
    snapshot = request.app[FEED].snapshot_message()
    alerts = request.app[ALERTS].message
    hub.join(ws, request.transport, request.remote or "?", snapshot, *filter(None, [alerts]))
    try:
        async for _message in ws:
            pass
    finally:
        hub.leave(ws)
    return ws
