"""JSON responses: every answer of the API, errors included, is a JSON object."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
from aiohttp import web

from common.messages import Tick

_ENCODER = msgspec.json.Encoder()


def json_reply(
    data: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return `data` encoded as JSON with the given HTTP status."""
    return web.Response(
        body=_ENCODER.encode(data),
        status=status,
        headers=headers,
        content_type="application/json",
    )


def error_reply(
    message: str, status: int, headers: Mapping[str, str] | None = None
) -> web.Response:
    """Return {"error": message} with the given HTTP status."""
    return json_reply({"error": message}, status, headers)


def not_known_reply(
    missing_uuids: Iterable[str], missing_hosts: Iterable[str], ticks: Iterable[Tick]
) -> web.Response | None:
    """Return the 404 for the first GPU or host asked for that the file lacks (missing_*) and
    the live feed's newest ticks lack too; None when every one is known."""
    ticks = list(ticks)
    live_uuids = {reading.uuid for tick in ticks for reading in tick.gpus}
    for uuid in missing_uuids:
        if uuid not in live_uuids:
            return error_reply(f"gpu={uuid!r} is not a known GPU UUID", 404)
    live_hosts = {tick.host for tick in ticks}
    for host in missing_hosts:
        if host not in live_hosts:
            return error_reply(f"host={host!r} is not a known host", 404)
    return None
