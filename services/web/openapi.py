"""The OpenAPI 3.1 document of the API, generated from the typed shapes (services/web/shapes.py).

- Schemas come from msgspec.json.schema_components over the reply types: never written by hand.
- ROUTES declares each route: its reply type, query parameters and the errors it may answer.
- GET /api/v1/openapi.json answers the document; scripts/api_docs.py writes docs/api.md from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import msgspec
from aiohttp import web

from common.messages import MAX_EPOCH_S, MAX_HOST_CHARS, MAX_UUID_CHARS
from common.metrics import METRIC_NAMES
from services.web import shapes
from services.web.params import HISTORY_SHAPES, MAX_GPUS, MAX_HOSTS, MAX_POINTS
from services.web.usage import USAGE_KEYS
from services.web.views import package_version

REF_TEMPLATE = "#/components/schemas/{name}"
OPENAPI_PATH = "/api/v1/openapi.json"
TITLE = "pyCudaWatch API"
ERRORS = {
    400: "A query parameter is unknown, repeated or out of range; the error names it.",
    401: "Signing in is on and the request is not signed in.",
    403: "The request's origin is not allowed.",
    404: "The GPU, host or silence asked for is not known.",
    409: "No notification target is set (PCW_NOTIFY_URLS, PCW_NOTIFY_CONFIG).",
    415: "The body is not JSON (Content-Type: application/json).",
    429: "Too many failed sign-ins from this address; Retry-After says when to try again.",
    500: "A bug: the web process's log has the details.",
    503: "The database is busy, missing or the query would take too long; try again.",
}


@dataclass(frozen=True)
class Param:
    """A query parameter: its name, what it means, its JSON schema; max_count: it may repeat."""

    name: str
    text: str
    schema: dict[str, Any]
    max_count: int = 1


EPOCH_S = {"type": "number", "minimum": 0, "maximum": MAX_EPOCH_S}
UUID = {"type": "string", "minLength": 1, "maxLength": MAX_UUID_CHARS}
FROM = Param("from", "Start of the range, UTC epoch seconds, before `to`.", EPOCH_S)
TO = Param("to", "End of the range, UTC epoch seconds (default: now).", EPOCH_S)
GPUS = Param("gpu", "A GPU UUID; may repeat (none: every GPU).", UUID, MAX_GPUS)
HOST = Param(
    "host",
    "Only this host; may repeat (none: every host).",
    {"type": "string", "minLength": 1, "maxLength": MAX_HOST_CHARS},
    MAX_HOSTS,
)


@dataclass(frozen=True)
class Route:
    """One route: its reply (a shapes type, or a media type for a non-JSON one); a POST's
    JSON body type; path_params: the names in its path, each an integer."""

    path: str
    summary: str
    reply: Any
    params: tuple[Param, ...] = ()
    errors: tuple[int, ...] = ()
    media_type: str = "application/json"
    status: int = 200
    method: str = "get"
    body: Any = None
    path_params: tuple[str, ...] = ()
    also: Any = None  # another reply shape a parameter asks for (the deprecated history rows)


ROUTES: tuple[Route, ...] = (
    Route("/api/v1/gpus", "Every GPU with its newest reading.", shapes.GpusReply),
    Route("/api/v1/hosts", "Every host: when last seen, and whether stale.", shapes.HostsReply),
    Route(
        "/api/v1/history",
        "Bucketed series (mean and max per metric) of the asked GPUs over a range, as columns"
        " (HistoryColumnsReply), or with shape=rows one object per bucket (HistoryReply,"
        " deprecated: kept for one release).",
        shapes.HistoryColumnsReply,
        (
            GPUS,
            HOST,
            FROM,
            TO,
            Param(
                "points",
                "At most this many buckets per series (default 500).",
                {"type": "integer", "minimum": 1, "maximum": MAX_POINTS},
            ),
            Param(
                "metric",
                "Only this metric; may repeat (none: the twelve of a reading; health metrics"
                " only when named).",
                {"enum": list(METRIC_NAMES)},
                len(METRIC_NAMES),
            ),
            Param(
                "shape",
                "columns (default): one array per statistic; rows: one object per bucket"
                " (deprecated).",
                {"enum": list(HISTORY_SHAPES)},
            ),
        ),
        (400, 404),
        also=shapes.HistoryReply,
    ),
    Route(
        "/api/v1/processes",
        "A GPU's processes at its newest tick, or at the tick at or before `at`.",
        shapes.ProcessesReply,
        (
            Param("gpu", "The GPU's UUID.", UUID),
            Param("at", "A time, UTC epoch seconds (default: the newest tick).", EPOCH_S),
        ),
        (400, 404),
    ),
    Route(
        "/api/v1/usage",
        "GPU-hours and GPU-memory-hours per user, process or container over a range.",
        shapes.UsageReply,
        (
            FROM,
            TO,
            Param("by", "Group by (default: user).", {"enum": list(USAGE_KEYS)}),
            GPUS,
        ),
        (400, 404),
    ),
    Route(
        "/api/v1/energy",
        "Energy per GPU, per host and in total over a range, in kWh and cost.",
        shapes.EnergyReply,
        (FROM, TO, HOST),
        (400, 404),
    ),
    Route(
        "/api/v1/events",
        "Health events (XIDs, findings started and ended, new uncorrected ECC errors) and each"
        " GPU's counts over a range (default: the last day).",
        shapes.EventsReply,
        (
            FROM,
            TO,
            GPUS,
            HOST,
        ),
        (400, 404),
    ),
    Route(
        "/api/v1/alerts",
        "The alerts pending or firing now, their transitions over a range (default: the last"
        " 7 days; newest first), the silences in force and the notifications' delivery counts.",
        shapes.AlertsReply,
        (
            Param("state", "Only this state.", {"enum": ["pending", "firing", "resolved"]}),
            FROM,
            TO,
            Param("rule", "Only this rule.", {"type": "string", "minLength": 1, "maxLength": 64}),
            Param(
                "host",
                "Only this host.",
                {"type": "string", "minLength": 1, "maxLength": MAX_HOST_CHARS},
            ),
        ),
        (400,),
    ),
    Route(
        "/api/v1/silences",
        "Silence an alert (key), or every alert of a rule, host or GPU, for duration_s seconds:"
        " its notifications are not sent meanwhile. The answer is the stored silence.",
        shapes.Silence,
        errors=(400, 403, 415),
        status=201,
        method="post",
        body=shapes.SilenceRequest,
    ),
    Route(
        "/api/v1/silences/{silence_id}/end",
        "End a silence now.",
        shapes.SilenceEnded,
        errors=(400, 403, 404, 415),
        method="post",
        path_params=("silence_id",),
    ),
    Route(
        "/api/v1/notifications/test",
        "Send a test notification to every target (stored, then sent by the writer).",
        shapes.TestNotificationReply,
        errors=(403, 409, 415),
        status=202,
        method="post",
    ),
    Route(
        "/healthz",
        "200 when readings flow and the writer is well, else 503 with the same body.",
        shapes.Health,
    ),
    Route(OPENAPI_PATH, "This document.", None),
    Route(
        "/metrics", "Prometheus text exposition format (not JSON).", None, media_type="text/plain"
    ),
    Route(
        "/ws",
        "WebSocket (GET with Upgrade): a SnapshotMessage, then TickMessage and HostsMessage"
        " frames, each a JSON text frame.",
        None,
        errors=(403,),
        media_type="",
        status=101,
    ),
)
REQUIRED = {"/api/v1/processes": ("gpu",)}
# Types in the document that no route answers directly: the websocket's messages.
EXTRA_TYPES = (
    shapes.SnapshotMessage,
    shapes.TickMessage,
    shapes.HostsMessage,
    shapes.AlertsMessage,
    shapes.Bucket,
)


def _raw_schema(kind: type) -> dict[str, Any]:
    """Describe msgspec.Raw: nothing here; each Raw field's Meta in shapes says what it holds
    (the history's JSON, already encoded by SQLite)."""
    if kind is msgspec.Raw:
        return {}
    raise NotImplementedError(kind)


def _parameter(param: Param, path: str) -> dict[str, Any]:
    schema = param.schema
    if param.max_count > 1:
        schema = {"type": "array", "items": schema, "maxItems": param.max_count}
    return {
        "name": param.name,
        "in": "query",
        "required": param.name in REQUIRED.get(path, ()),
        "description": param.text,
        "schema": schema,
        **({"style": "form", "explode": True} if param.max_count > 1 else {}),
    }


def _content(ref: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": ref}}


def _operation(route: Route, refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    error_ref = refs[shapes.ErrorBody]
    if route.also is not None:
        body: dict[str, Any] = _content({"anyOf": [refs[route.reply], refs[route.also]]})
    elif route.reply is not None:
        body = _content(refs[route.reply])
    elif route.path == OPENAPI_PATH:
        body = _content({"type": "object"})
    elif route.media_type:
        body = {route.media_type: {"schema": {"type": "string"}}}
    else:
        body = {}
    responses: dict[str, Any] = {
        str(route.status): {"description": route.summary, **({"content": body} if body else {})}
    }
    if route.path == "/healthz":
        responses["503"] = {
            "description": "Something is wrong: `problems` says what.",
            "content": body,
        }
    for status in (*route.errors, 401, 429, 500):
        if str(status) not in responses:
            responses[str(status)] = {"description": ERRORS[status], "content": _content(error_ref)}
    responses.setdefault("503", {"description": ERRORS[503], "content": _content(error_ref)})
    operation: dict[str, Any] = {
        "summary": route.summary,
        "operationId": route.path.strip("/").replace("/", "_").replace(".", "_") or "root",
        "responses": responses,
    }
    parameters = [_parameter(param, route.path) for param in route.params]
    parameters += [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": "The id the server gave it.",
            "schema": {"type": "integer", "minimum": 0},
        }
        for name in route.path_params
    ]
    if parameters:
        operation["parameters"] = parameters
    if route.method == "post":
        body_schema = refs[route.body] if route.body is not None else {"type": "object"}
        operation["requestBody"] = {"required": True, "content": _content(body_schema)}
    return operation


def openapi_document(version: str) -> dict[str, Any]:
    """Return the OpenAPI 3.1 document of every route, its schemas generated from the shapes."""
    types = [route.reply for route in ROUTES if route.reply is not None]
    types += [route.body for route in ROUTES if route.body is not None]
    types += [route.also for route in ROUTES if route.also is not None]
    types += [shapes.ErrorBody, *EXTRA_TYPES]
    types = list(dict.fromkeys(types))
    refs_list, components = msgspec.json.schema_components(
        types, schema_hook=_raw_schema, ref_template=REF_TEMPLATE
    )
    refs = dict(zip(types, refs_list, strict=True))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": TITLE,
            "version": version,
            "description": "Times are UTC epoch seconds. Every error is a JSON ErrorBody.",
        },
        "paths": _paths(refs),
        "components": {"schemas": components},
    }


def _paths(refs: dict[Any, dict[str, Any]]) -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for route in ROUTES:
        paths.setdefault(route.path, {})[route.method] = _operation(route, refs)
    return paths


@cache
def openapi_json(version: str) -> bytes:
    """Return the document encoded once per version."""
    return msgspec.json.encode(openapi_document(version))


async def openapi(request: web.Request) -> web.Response:
    """Answer the OpenAPI document."""
    return web.Response(body=openapi_json(package_version()), content_type="application/json")
