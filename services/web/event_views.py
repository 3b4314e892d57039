"""GET /api/v1/events: the GPUs' health events and counts over a range."""

from __future__ import annotations

import time

from aiohttp import web

from services.web.event_reads import events_job
from services.web.gpu_reads import known_gpus_job
from services.web.keys import FEED, STORE
from services.web.params import ParamError, parse_events_query
from services.web.replies import error_reply, json_reply
from services.web.shapes import Event, EventsReply, HealthCounts


async def events(request: web.Request) -> web.Response:
    """Answer the events (XIDs, findings started and ended, new ECC errors) and the counts."""
    try:
        query = parse_events_query(request.query, now_s=time.time())
    except ParamError as error:
        return error_reply(str(error), 400)
    store = request.app[STORE]
    if query.gpu_uuids or query.hosts:
        uuids, hosts = await store.call(known_gpus_job(), (set(), set()))
        for tick in request.app[FEED].latest_ticks():
            hosts.add(tick.host)
            uuids.update(reading.uuid for reading in tick.gpus)
        for uuid in query.gpu_uuids:
            if uuid not in uuids:
                return error_reply(f"gpu={uuid!r} is not a known GPU", 404)
        for host in query.hosts:
            if host not in hosts:
                return error_reply(f"host={host!r} is not a known host", 404)
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
