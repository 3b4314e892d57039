"""JSON responses: every answer of the API, errors included, is a JSON object."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from aiohttp import web

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
