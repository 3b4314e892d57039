"""GET /api/v1/events: the GPUs' health events and counts over a range."""

from __future__ import annotations

import time

from aiohttp import web

from services.web.event_reads import events_job
from services.web.keys import STORE
from services.web.params import ParamError, parse_events_query
from services.web.proc_views import unknown_filter
from services.web.replies import error_reply, json_reply
from services.web.shapes import Event, EventsReply, HealthCounts


async def events(request: web.Request) -> web.Response:
    """Answer the events (XIDs, findings started and ended, new ECC errors) and the counts."""
    try:
        query = parse_events_query(request.query, now_s=time.time())
    except ParamError as error:
        return error_reply(str(error), 400)
    unknown = await unknown_filter(request, query.gpu_uuids, query.hosts)
    if unknown is not None:
        return unknown
    store = request.app[STORE]
    job = events_job(query.from_s, query.to_s, query.gpu_uuids, query.hosts)
    read = await store.call(job, None, long=True)
    if read is None:
        return json_reply(EventsReply(query.from_s, query.to_s, [], False, []))
    return json_reply(
        EventsReply(
            query.from_s,
            query.to_s,
            [
                Event(e.ts, gpu.gpu_uuid, gpu.host, gpu.gpu_index, e.kind, e.code, e.text)
                for e, gpu in read.events
            ],
            read.truncated,
            [
                HealthCounts(
                    item.gpu.gpu_uuid, item.gpu.host, item.gpu.gpu_index, **vars(item.counts)
                )
                for item in read.gpus
            ],
        )
    )
