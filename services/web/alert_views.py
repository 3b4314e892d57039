"""The alert routes: GET /api/v1/alerts, POST /api/v1/silences, POST /api/v1/silences/{id}/end,
POST /api/v1/notifications/test.

A POST is CSRF-safe: it takes only a JSON body (a form of another site cannot send one without a
CORS preflight, which this server never grants) and, where the browser says its Origin, only
from the page's own origin; with PCW_AUTH_FILE set it asks for the same sign-in as every route.
"""

from __future__ import annotations

import asyncio
import math
import re
import time

import msgspec
from aiohttp import hdrs, web

from common.config import Config
from services.web.alert_reads import events_job, now_job
from services.web.alert_writes import (
    AlertWriteError,
    add_silence,
    add_test_notification,
    end_silence,
)
from services.web.auth import SIGNED_IN_USER
from services.web.keys import CONFIG, STORE
from services.web.params import (
    ParamError,
    check_gpu_uuid,
    parse_alerts_query,
    parse_hosts,
    shown,
)
from services.web.replies import error_reply, json_reply
from services.web.shapes import (
    AlertsReply,
    Deliveries,
    SilenceEnded,
    SilenceRequest,
    TestNotificationReply,
)
from services.web.websocket import origin_allowed, page_scheme

MAX_SILENCE_S = 30 * 86400.0
SILENCE_ID = re.compile(r"[0-9]{1,18}", re.ASCII)
MAX_TEXT_CHARS = 500


def configured_targets(config: Config) -> int:
    """Return how many notification targets the settings name (a config file counts one)."""
    return len(config.notify_urls) + (config.notify_config is not None)


def target_count(request: web.Request) -> int:
    """Return how many notification targets the settings name (their URLs stay unread here)."""
    return configured_targets(request.app[CONFIG])


async def alerts(request: web.Request) -> web.Response:
    """Answer the alerts now, their transitions over the range, silences and deliveries."""
    try:
        query = parse_alerts_query(request.query, time.time())
    except ParamError as error:
        return error_reply(str(error), 400)
    store = request.app[STORE]
    now = await store.call(now_job(time.time(), target_count(request)), None)
    events, truncated = [], False
    if query.state != "pending":
        event_state = None if query.state is None else query.state
        job = events_job(query.from_s, query.to_s, event_state, query.rule, query.host)
        events, truncated = await store.call(job, ([], False), long=True)
    if now is None:
        reply = AlertsReply(
            query.from_s,
            query.to_s,
            [],
            events,
            truncated,
            [],
            Deliveries(target_count(request), 0, 0, 0, 0, 0),
        )
        return json_reply(reply)
    active = [
        alert
        for alert in now.active
        if query.state in (None, alert.state)
        and query.rule in (None, alert.rule)
        and query.host in (None, alert.host)
    ]
    return json_reply(
        AlertsReply(
            query.from_s, query.to_s, active, events, truncated, now.silences, now.deliveries
        )
    )


def _refused_post(request: web.Request) -> web.Response | None:
    """Return the refusal of a POST from another origin or without a JSON body, None if fine."""
    origin = request.headers.get(hdrs.ORIGIN)
    if not origin_allowed(origin, request.host, page_scheme(request)):
        return error_reply(f"a request from origin {origin!r} is not allowed", 403)
    if request.content_type != "application/json":
        return error_reply("the body must be JSON (Content-Type: application/json)", 415)
    return None


async def silence(request: web.Request) -> web.Response:
    """Store a silence of an alert, or of a rule, host or GPU's alerts, for a time."""
    refused = _refused_post(request)
    if refused is not None:
        return refused
    try:
        asked = msgspec.json.decode(await request.read(), type=SilenceRequest)
    except msgspec.DecodeError as error:
        return error_reply(f"bad silence: {error}", 400)
    try:
        _check_silence(asked)
    except ParamError as error:
        return error_reply(str(error), 400)
    config = request.app[CONFIG]
    try:
        made = await asyncio.to_thread(
            add_silence,
            config.db_path,
            asked.key,
            asked.rule,
            asked.host,
            asked.gpu,
            asked.duration_s,
            request.get(SIGNED_IN_USER),
            asked.comment,
        )
    except AlertWriteError as error:
        return error_reply(str(error), 503, {hdrs.RETRY_AFTER: "5"})
    return json_reply(made, 201)


async def end(request: web.Request) -> web.Response:
    """End a silence now."""
    refused = _refused_post(request)
    if refused is not None:
        return refused
    text = request.match_info["silence_id"]
    if not SILENCE_ID.fullmatch(text):
        return error_reply(f"silence id {shown(text)} is not a number", 400)
    try:
        ended = await asyncio.to_thread(end_silence, request.app[CONFIG].db_path, int(text))
    except AlertWriteError as error:
        return error_reply(str(error), 503, {hdrs.RETRY_AFTER: "5"})
    if not ended:
        return error_reply(f"silence {text} is not in force", 404)
    return json_reply(SilenceEnded(int(text), True))


async def test_notification(request: web.Request) -> web.Response:
    """Store a test message for every target; 409 when no target is set."""
    refused = _refused_post(request)
    if refused is not None:
        return refused
    targets = target_count(request)
    if not targets:
        return error_reply(
            "no notification target is set: set PCW_NOTIFY_URLS or PCW_NOTIFY_CONFIG", 409
        )
    try:
        made = await asyncio.to_thread(
            add_test_notification, request.app[CONFIG].db_path, request.get(SIGNED_IN_USER)
        )
    except AlertWriteError as error:
        return error_reply(str(error), 503, {hdrs.RETRY_AFTER: "5"})
    return json_reply(TestNotificationReply(made, targets), 202)


def _check_silence(asked: SilenceRequest) -> None:
    if not (math.isfinite(asked.duration_s) and 0 < asked.duration_s <= MAX_SILENCE_S):
        raise ParamError(f"duration_s must be from 0 to {MAX_SILENCE_S:g} seconds")
    if all(value is None for value in (asked.key, asked.rule, asked.host, asked.gpu)):
        raise ParamError("a silence names an alert (key), or a rule, host or gpu")
    for name, value in (("key", asked.key), ("rule", asked.rule), ("comment", asked.comment)):
        if value is not None and (len(value) > MAX_TEXT_CHARS or not value.isprintable()):
            raise ParamError(
                f"{name} must be printable text of at most {MAX_TEXT_CHARS} characters"
            )
    if asked.host is not None:
        parse_hosts([asked.host])
    if asked.gpu is not None:
        check_gpu_uuid(asked.gpu)
