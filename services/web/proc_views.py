"""The HTTP handlers of processes, usage and energy: who used the GPUs, and what it cost."""

from __future__ import annotations

import time

import msgspec
from aiohttp import web

from services.web.energy import energy_report
from services.web.energy_reads import energy_job
from services.web.fleet import live_answers, live_process_list, live_readings, stored_processes
from services.web.gpu_reads import known_gpus_job
from services.web.keys import CONFIG, FEED, STORE
from services.web.params import (
    ParamError,
    parse_energy_query,
    parse_processes_query,
    parse_usage_query,
)
from services.web.process_reads import processes_job, usage_job
from services.web.replies import error_reply, json_reply, not_known_reply
from services.web.rows import ProcessList
from services.web.shapes import EnergyReply, ProcessesReply, UsageReply, UsageRow


async def processes(request: web.Request) -> web.Response:
    """Answer a GPU's processes at its newest tick, or at the tick at or before `at`."""
    try:
        uuid, at_s = parse_processes_query(request.query)
    except ParamError as error:
        return error_reply(str(error), 400)
    stored = await request.app[STORE].call(processes_job(uuid, at_s), ProcessList(None, None, None))
    tick, reading = live_readings(request.app[FEED].latest_ticks()).get(uuid, (None, None))
    if stored.gpu is None and tick is None:
        return error_reply(f"gpu={uuid!r} is not a known GPU UUID", 404)
    reply = ProcessesReply(uuid, stored.ts, stored_processes(stored))
    if (
        tick is not None
        and reading is not None
        and (at_s is None or tick.ts <= at_s)
        and live_answers(tick.ts, stored.ts)
    ):
        reply = ProcessesReply(uuid, tick.ts, live_process_list(tick, reading, stored, tick.ts))
    return json_reply(reply)


async def usage(request: web.Request) -> web.Response:
    """Answer GPU-hours and GPU-memory-hours per user, process or container over a range."""
    try:
        query = parse_usage_query(request.query, now_s=time.time())
    except ParamError as error:
        return error_reply(str(error), 400)
    unknown = await unknown_filter(request, query.gpu_uuids, ())
    if unknown is not None:
        return unknown
    rows = await request.app[STORE].call(
        usage_job(query.from_s, query.to_s, query.by, query.gpu_uuids), [], long=True
    )
    reply = UsageReply(query.from_s, query.to_s, query.by, msgspec.convert(rows, list[UsageRow]))
    return json_reply(reply)


async def energy(request: web.Request) -> web.Response:
    """Answer the energy per GPU, per host and in total over a range, in kWh and cost."""
    try:
        query = parse_energy_query(request.query, now_s=time.time())
    except ParamError as error:
        return error_reply(str(error), 400)
    store = request.app[STORE]
    unknown = await unknown_filter(request, (), query.hosts)
    if unknown is not None:
        return unknown
    gpus = await store.call(energy_job(query.from_s, query.to_s, query.hosts), [], long=True)
    config = request.app[CONFIG]
    report = energy_report(
        gpus, query.from_s, query.to_s, config.energy_price_per_kwh, config.currency
    )
    return json_reply(msgspec.convert(report, EnergyReply))


async def unknown_filter(
    request: web.Request, gpu_uuids: tuple[str, ...], hosts: tuple[str, ...]
) -> web.Response | None:
    """Return the 404 for the first GPU or host asked for that neither the file nor the live
    feed knows, None when all are known (or none asked for)."""
    if not gpu_uuids and not hosts:
        return None
    uuids, known_hosts = await request.app[STORE].call(known_gpus_job(), (set(), set()))
    return not_known_reply(
        [uuid for uuid in gpu_uuids if uuid not in uuids],
        [host for host in hosts if host not in known_hosts],
        request.app[FEED].latest_ticks(),
    )
