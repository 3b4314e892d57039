"""Wire the web application: state, templates, static files, resources and routes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import WSCloseCode, web

from common.config import Config
from common.status import status_endpoint
from services.transport.curve import hub_keys
from services.web import alert_views, event_views, gpu_page, proc_views, views
from services.web.alert_metrics import AlertCollector
from services.web.alert_watch import AlertWatch
from services.web.auth import SignInLimits, basic_auth, load_users
from services.web.feed import LiveFeed
from services.web.headers import setup_security_headers
from services.web.history_cache import HISTORY_CACHE, HistoryCache
from services.web.http_errors import (
    ERRORS,
    ErrorCollector,
    ErrorLog,
    ServerLog,
    setup_server_errors,
)
from services.web.hub import Hub
from services.web.idle_reads import IdleRuns
from services.web.keys import (
    ALERTS,
    CLOCK,
    CONFIG,
    COUNTERS,
    FEED,
    HUB,
    IDLE_RUNS,
    STORE,
    WRITER,
    Counters,
)
from services.web.metrics import COLLECTOR, METRICS_PATH, PipelineCollector, metrics
from services.web.middlewares import compress_and_cache, json_errors
from services.web.openapi import OPENAPI_PATH, openapi
from services.web.page_assets import module_preloads
from services.web.stale_watch import StaleWatch
from services.web.store import QUERY_TIME_LIMIT_S, LaneLimits, Store
from services.web.websocket import websocket
from services.web.writer_status import WriterStatusFeed

TEMPLATES_DIR = Path(__file__).parent / "templates"
STATIC_DIR = Path(__file__).parent / "static"
MAX_REQUEST_BODY_BYTES = 64 * 1024  # the API takes no request bodies


def create_app(
    config: Config,
    *,
    templates_dir: Path = TEMPLATES_DIR,
    static_dir: Path = STATIC_DIR,
    query_time_limit_s: float = QUERY_TIME_LIMIT_S,
    clock: Callable[[], float] = time.time,
) -> web.Application:
    """Return the web application for `config`; nothing is opened until it starts.

    clock: the wall clock (UTC epoch s) by which hosts are judged stale, the same for the API,
    /healthz, /metrics and the websocket.
    """
    errors = ErrorLog()
    middlewares = [json_errors, compress_and_cache]
    if config.auth_file is not None:  # raises AuthFileError on a bad file
        users = load_users(config.auth_file)
        middlewares.insert(0, basic_auth(users, sign_in_limits(config), errors))
    app = web.Application(
        middlewares=middlewares,
        client_max_size=MAX_REQUEST_BODY_BYTES,
        handler_args={"logger": ServerLog(errors)},
    )
    setup_security_headers(app)
    setup_server_errors(app)
    app[ERRORS] = errors
    hub = Hub(buffer_bytes=config.ws_send_buffer_bytes)
    app[CONFIG] = config
    app[STORE] = Store(
        config.db_path,
        time_limit_s=query_time_limit_s,
        live=LaneLimits(config.live_readers, config.live_read_queue),
        ranges=LaneLimits(config.range_readers, config.range_read_queue),
        cache_bytes=config.reader_cache_bytes,
    )
    app[IDLE_RUNS] = IdleRuns()
    app[HISTORY_CACHE] = HistoryCache(config.history_cache_bytes)
    app[HUB] = hub
    app[CLOCK] = clock
    app[FEED] = LiveFeed(on_message=hub.publish, clock=clock)
    app[COUNTERS] = Counters()
    app[WRITER] = WriterStatusFeed(config.db_path)
    app[ALERTS] = AlertWatch(app[STORE], hub.publish, alert_views.configured_targets(config))
    app[COLLECTOR] = PipelineCollector(
        app[FEED],
        app[WRITER].current,
        app[STORE].file_bytes,
        clock,
        (ErrorCollector(errors), AlertCollector(app[ALERTS])),
    )

    env = aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(templates_dir), autoescape=True)
    env.globals["module_preloads"] = module_preloads  # for the <head> macros in _parts.html
    app[aiohttp_jinja2.static_root_key] = "/static"

    app.cleanup_ctx.append(_reading)
    app.cleanup_ctx.append(_listening)
    app.cleanup_ctx.append(_watching_staleness)
    app.cleanup_ctx.append(_writer_listening)
    app.cleanup_ctx.append(_watching_alerts)
    app.on_shutdown.append(_close_websockets)

    app.router.add_get("/", views.index, name="index")
    app.router.add_get("/gpu/{gpu_uuid}", gpu_page.gpu_page, name="gpu_page")
    app.router.add_get("/api/v1/gpus", views.gpus, name="gpus")
    app.router.add_get("/api/v1/history", views.history, name="history")
    app.router.add_get("/api/v1/hosts", views.hosts, name="hosts")
    app.router.add_get("/api/v1/processes", proc_views.processes, name="processes")
    app.router.add_get("/api/v1/usage", proc_views.usage, name="usage")
    app.router.add_get("/api/v1/energy", proc_views.energy, name="energy")
    app.router.add_get("/api/v1/events", event_views.events, name="events")
    app.router.add_get("/api/v1/alerts", alert_views.alerts, name="alerts")
    app.router.add_post("/api/v1/silences", alert_views.silence, name="silences")
    app.router.add_post("/api/v1/silences/{silence_id}/end", alert_views.end, name="silence_end")
    app.router.add_post(
        "/api/v1/notifications/test", alert_views.test_notification, name="notification_test"
    )
    app.router.add_get("/healthz", views.healthz, name="healthz")
    app.router.add_get(OPENAPI_PATH, openapi, name="openapi")
    app.router.add_get(METRICS_PATH, metrics, name="metrics")
    app.router.add_get("/ws", websocket, name="ws")
    # url('static', filename=...) in a template gives the URL with ?v=<hash of the file>.
    app.router.add_static("/static/", static_dir, name="static", append_version=True)
    return app


async def _reading(app: web.Application) -> AsyncIterator[None]:
    """Close the database reader's connections and threads when the app stops."""
    yield
    await app[STORE].close()


async def _listening(app: web.Application) -> AsyncIterator[None]:
    """Listen to the samplers while the app runs; stop and close the socket when it stops."""
    async with app[FEED].listening(app[CONFIG].subscribe, hub_keys(app[CONFIG])):
        yield


async def _watching_staleness(app: web.Application) -> AsyncIterator[None]:
    """Tell the websockets when a host goes stale while the app runs."""
    watch = StaleWatch(app[FEED], app[HUB].publish, clock=app[CLOCK])
    task = asyncio.create_task(watch.run(), name="pcw-stale-watch")
    yield
    task.cancel()
    await asyncio.wait([task])  # unlike `await task`, never swallows our own cancel


async def _watching_alerts(app: web.Application) -> AsyncIterator[None]:
    """Tell the websockets when the alerts change while the app runs."""
    task = asyncio.create_task(app[ALERTS].run(), name="pcw-alert-watch")
    yield
    task.cancel()
    await asyncio.wait([task])


async def _writer_listening(app: web.Application) -> AsyncIterator[None]:
    """Listen to the writer's status, which needs no disk, while the app runs."""
    config = app[CONFIG]
    async with app[WRITER].listening(status_endpoint(config.status_endpoint, config.db_path)):
        yield


async def _close_websockets(app: web.Application) -> None:
    """Tell every browser the server is going away, so that the page reconnects later."""
    await app[HUB].close_all(WSCloseCode.GOING_AWAY, b"server shutdown")


def sign_in_limits(config: Config) -> SignInLimits:
    """Return the bounds of password checks that the PCW_SIGN_IN_* settings give."""
    return SignInLimits(
        at_once=config.sign_in_at_once,
        queue=config.sign_in_queue,
        failures=config.sign_in_failures,
        lockout_s=config.sign_in_lockout_s,
        clients=config.sign_in_clients,
    )
