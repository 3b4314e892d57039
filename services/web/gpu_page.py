"""The page of one GPU (GET /gpu/{gpu_uuid}): its charts, events and processes over a range.

The handler only says whether the GPU is known and names it; the page's script fetches the rest
from the JSON API, as the dashboard does. An unknown UUID gets the same page saying so, with 404.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import aiohttp_jinja2
from aiohttp import web

from services.web.fleet import live_readings
from services.web.gpu_reads import read_gpu
from services.web.keys import CONFIG, FEED, STORE
from services.web.params import ParamError, check_gpu_uuid
from services.web.views import page_context

TEMPLATE = "gpu.html"


@dataclass(frozen=True)
class PageGpu:
    """What the page's heading shows before its script has asked the API for more."""

    gpu_uuid: str
    gpu_name: str
    host: str
    gpu_index: int


async def find_gpu(request: web.Request, gpu_uuid: str) -> PageGpu | None:
    """Return the GPU of this UUID as the live feed or else the file knows it; None if neither."""
    try:
        check_gpu_uuid(gpu_uuid)
    except ParamError:
        return None
    live = live_readings(request.app[FEED].latest_ticks()).get(gpu_uuid)
    if live is not None:
        tick, reading = live
        return PageGpu(gpu_uuid, reading.name, tick.host, reading.index)
    row = await request.app[STORE].call(lambda conn: read_gpu(conn, gpu_uuid), None)
    if row is None:
        return None
    return PageGpu(gpu_uuid, row.gpu_name, row.host, row.gpu_index)


async def gpu_page(request: web.Request) -> web.Response:
    """Render one GPU's page; 404 with a page that says so when no GPU has this UUID."""
    config = request.app[CONFIG]
    gpu_uuid = request.match_info["gpu_uuid"]
    gpu = await find_gpu(request, gpu_uuid)
    context = {
        **page_context(config),
        "gpu": None if gpu is None else asdict(gpu),
        "asked_uuid": gpu_uuid,
    }
    return aiohttp_jinja2.render_template(
        TEMPLATE, request, context, status=200 if gpu is not None else 404
    )
