"""The HTTP handlers: the page, the JSON API and /healthz. The websocket is in websocket.py."""

from __future__ import annotations

import time
from functools import cache
from importlib import metadata
from typing import Any

import aiohttp_jinja2
import msgspec
from aiohttp import hdrs, web

from common.config import Config
from services.web.buckets import bucket_span, choose_step_s, empty_buckets
from services.web.fleet import (
    Idleness,
    Live,
    build_fleet,
    host_states,
    live_answers,
)
from services.web.gpu_reads import gpus_with_latest_job
from services.web.health import HealthInputs, assess, current_gpu_errors
from services.web.history_body import columns_plan, live_only_gpus
from services.web.history_cache import HISTORY_CACHE
from services.web.history_reads import history_job
from services.web.idle_reads import idle_job
from services.web.keys import CLOCK, CONFIG, COUNTERS, FEED, HUB, IDLE_RUNS, STORE, WRITER
from services.web.middlewares import COMPRESS_MIN_BYTES, accepts_gzip
from services.web.ordered_reads import read_in_order
from services.web.params import HistoryQuery, ParamError, parse_history_query
from services.web.replies import error_reply, json_reply, not_known_reply
from services.web.rows import GpuLatest, HistoryRows
from services.web.shapes import (
    GpusReply,
    Health,
    HistoryReply,
    HostsReply,
    Series,
)
from services.web.skeleton import first_paint
from services.web.store import StoreError

PACKAGE = "pycudawatch"


@cache
def package_version() -> str:
    """Return the installed package's version, or "unknown" when run from a plain checkout."""
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "unknown"


async def index(request: web.Request) -> web.Response:
    """Render the dashboard page with its cards' places; its script fetches the data itself."""
    paint = await first_paint(request)
    context = {
        **page_context(request.app[CONFIG]),
        "skeleton": paint.hosts,
        "fleet_view": paint.fleet,
        "page_view": paint.view,  # the script shows the view the server chose (skeleton.py)
    }
    return aiohttp_jinja2.render_template("index.html", request, context)


def page_context(config: Config) -> dict[str, Any]:
    """Return what every page's template is told: simulated or not, the host, the interval."""
    return {
        "simulated": config.source == "simulated",
        "host_name": config.host_name,
        "interval_s": config.interval_s,
        "version": package_version(),
    }


def live(request: web.Request) -> Live:
    """Return what the live feed knows at this moment."""
    feed = request.app[FEED]
    return Live(feed.latest_ticks(), feed.received_s(), feed.error_run, feed.health)


async def gpus(request: web.Request) -> web.Response:
    """Answer every known GPU with its identity and latest reading (the live one if newer)."""
    config, store = request.app[CONFIG], request.app[STORE]
    read_latest = gpus_with_latest_job()
    read_idle = idle_job(config.idle_util_pct, request.app[IDLE_RUNS])
    # one read transaction: the latest readings and the idle runs are of the same moment
    stored, idle = await store.call(lambda conn: (read_latest(conn), read_idle(conn)), ([], []))
    request.app[FEED].health.learn_stored(stored)  # the websocket then shows them too
    idleness = Idleness(idle, config.idle_util_pct, config.idle_after_s)
    now_s = request.app[CLOCK]()
    fleet = build_fleet(stored, live(request), now_s, config.interval_s, idleness)
    return json_reply(
        GpusReply(
            fleet.gpus,
            config.source == "simulated",
            config.interval_s,
            config.idle_util_pct,
            config.idle_after_s,
        )
    )


async def hosts(request: web.Request) -> web.Response:
    """Answer every host of the file and the live feed: when last seen, and whether stale."""
    config = request.app[CONFIG]
    stored = await request.app[STORE].call(gpus_with_latest_job(), [])
    feed = live(request)
    # The hosts build_fleet() would judge, without building every GPU.
    now_s = request.app[CLOCK]()
    states = host_states(stored, feed.ticks, now_s, config.interval_s, feed.received_s)
    return json_reply(HostsReply([state.public() for state in states.values()]))


async def history(request: web.Request) -> web.Response:
    """Answer the bucketed series of the asked GPUs between `from` and `to` (epoch seconds).

    As columns (HistoryColumnsReply), or with shape=rows one object per bucket (HistoryReply,
    deprecated). SQLite builds each GPU's arrays on range-read threads; the reply only places
    them (msgspec.Raw). The columns answer is gzipped on those threads as they read
    (_columns_answer); a large rows answer off the event loop (middlewares).
    """
    try:
        query = parse_history_query(request.query, now_s=time.time())
    except ParamError as error:
        return error_reply(str(error), 400)
    step_s = choose_step_s(query.from_s, query.to_s, query.points)
    first_bucket, bucket_count = bucket_span(query.from_s, query.to_s, step_s)
    if query.shape == "columns":
        return await _columns_answer(request, query, step_s, first_bucket, bucket_count)
    rows = await request.app[STORE].call(
        history_job(
            query.gpu_uuids,
            first_bucket,
            bucket_count,
            step_s,
            query.metrics,
            query.hosts,
        ),
        HistoryRows([], list(query.gpu_uuids), list(query.hosts)),
        long=True,
    )
    ticks = request.app[FEED].latest_ticks()
    unknown = not_known_reply(rows.missing_uuids, rows.missing_hosts, ticks)
    if unknown is not None:
        return unknown
    listed = {item.gpu.gpu_uuid for item in rows.series}
    live_only = live_only_gpus(
        query, step_s, first_bucket, bucket_count, rows.missing_uuids, listed, ticks
    )
    series = [
        Series(
            item.gpu.gpu_uuid,
            item.gpu.host,
            item.gpu.gpu_index,
            item.gpu.gpu_name,
            msgspec.Raw(item.buckets_json.encode()),
        )
        for item in rows.series
    ]
    if live_only:  # the same for every such GPU: encoded once
        gaps = msgspec.Raw(msgspec.json.encode(empty_buckets(first_bucket, bucket_count, step_s)))
        series.extend(Series(*identity, gaps) for identity in live_only)
    series.sort(key=lambda entry: (entry.host, entry.gpu_index, entry.gpu_uuid))
    return json_reply(HistoryReply(query.from_s, query.to_s, step_s, series))


async def _columns_answer(
    request: web.Request, query: HistoryQuery, step_s: int, first_bucket: int, bucket_count: int
) -> web.Response:
    """Answer HistoryColumnsReply: SQLite's arrays as they are, gaps for the live-only GPUs.

    The GPUs are shared between up to PCW_HISTORY_READERS range-read threads, which also
    encode and gzip the answer in the GPUs' order as they read it (ordered_reads, history_body).
    """
    config = request.app[CONFIG]
    plan = columns_plan(
        query,
        step_s,
        first_bucket,
        bucket_count,
        request.app[FEED].latest_ticks(),
        request.app[HISTORY_CACHE],
        gzip=accepts_gzip(request),
    )
    threads = min(config.history_readers, config.range_readers)
    answer = await read_in_order(request.app[STORE], plan, threads, config.range_readers)
    if answer.parts is None or answer.sink is None:
        return answer.unknown or error_reply("no history answer was planned", 500)
    headers = {}
    if answer.sink.plain_bytes > COMPRESS_MIN_BYTES:
        headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
    if answer.sink.gzipped:
        headers[hdrs.CONTENT_ENCODING] = "gzip"
    body = answer.parts.done.result()
    return web.Response(body=body, headers=headers, content_type="application/json")


async def healthz(request: web.Request) -> web.Response:
    """Answer 200 when readings flow and the writer is well, else 503; the body says why."""
    app = request.app
    config, feed, store = app[CONFIG], app[FEED], app[STORE]
    feed_now = live(request)
    newest = max(feed_now.ticks, key=lambda tick: tick.ts, default=None)
    interval_s = config.interval_s if newest is None else max(config.interval_s, newest.interval_s)
    last_tick_ts: float | None = None if newest is None else newest.ts
    source: str | None = None if newest is None else "live"
    db_problem: str | None = None
    stored: list[GpuLatest] = []
    db_bytes = store.file_bytes()
    if db_bytes is None:
        db_problem = f"the database file {store.db_path} does not exist yet"
    else:
        try:
            stored = await store.call(gpus_with_latest_job(), [])
        except StoreError as error:
            db_problem = str(error)
        stored_ts = max((item.gpu.last_ts for item in stored), default=None)
        if stored_ts is not None and (
            last_tick_ts is None or not live_answers(last_tick_ts, stored_ts)
        ):
            last_tick_ts, source = stored_ts, "db"
    now_s = app[CLOCK]()
    fleet = build_fleet(stored, feed_now, now_s, config.interval_s)
    body = assess(
        HealthInputs(
            now_s=now_s,
            interval_s=interval_s,
            last_tick_ts=last_tick_ts,
            last_tick_source=source,
            writer=app[WRITER].current(),
            db_bytes=db_bytes,
            db_problem=db_problem,
            malformed_messages=feed.malformed_messages,
            websocket_clients=app[HUB].client_count,
            internal_errors=app[COUNTERS].internal_errors + feed.internal_errors,
            gpu_errors=current_gpu_errors(fleet.gpus),
            hosts=tuple(fleet.hosts.values()),
        )
    )
    return json_reply(msgspec.convert(body, Health), 200 if body["status"] == "ok" else 503)
