"""The cards' places in the first paint: each host and GPU the web already knows, by name.

The page's script builds the GPU cards after it has loaded and asked the server; until then the
page had one line, "Waiting for the first reading…", and the cards then pushed everything under
them a screen down (a layout shift of 0.6-0.85 on load). The page is now served with one empty
card of the right size per GPU, grouped by host as the script groups them, taken from the live
feed's newest ticks and the file's GPUs (the live name first), as /api/v1/gpus lists them.
The script hides these places as it puts its first host's cards in (hosts.js).
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from services.web.gpu_reads import read_gpus
from services.web.keys import FEED, STORE
from services.web.store import StoreError

MAX_SKELETON_GPUS = 256  # a bigger fleet gets places for the first ones: the rest is below
# js/fleet.js's FLEET_MIN_GPUS: from this many GPUs on, without ?view=cards, the page shows the
# fleet view and no card at all.
FLEET_MIN_GPUS = 17


@dataclass(frozen=True)
class SkeletonGpu:
    """A GPU's place: what its card's header will say."""

    index: int
    name: str


@dataclass(frozen=True)
class SkeletonHost:
    """A host's section and its GPUs, in the order the script shows them."""

    name: str
    gpus: list[SkeletonGpu]


def group(gpus: list[tuple[str, int, str]], host_shown: str | None) -> list[SkeletonHost]:
    """Return hosts sorted by name, each with its GPUs by index; (host, index, name) in."""
    hosts: dict[str, dict[int, str]] = {}
    for host, index, name in gpus:
        if host_shown and host != host_shown:
            continue
        hosts.setdefault(host, {}).setdefault(index, name)
    shown, left = [], MAX_SKELETON_GPUS
    for host in sorted(hosts):
        indexes = sorted(hosts[host])[:left]
        if not indexes:
            break
        shown.append(SkeletonHost(host, [SkeletonGpu(i, hosts[host][i]) for i in indexes]))
        left -= len(indexes)
    return shown


@dataclass(frozen=True)
class FirstPaint:
    """What the page is served with: the cards' places, or the fleet view's (fleet: True)."""

    hosts: list[SkeletonHost]
    fleet: bool


async def first_paint(request: web.Request) -> FirstPaint:
    """Return the places of the cards the page will show, or that it shows the fleet view.

    In the fleet view the page is served with the fleet's place already taken (and the cards'
    and the charts' sections hidden), so that the table coming in moves nothing below it.
    """
    gpus = [
        (tick.host, reading.index, reading.name)
        for tick in request.app[FEED].latest_ticks()
        for reading in tick.gpus
    ]
    try:  # the file also knows the GPUs no sampler has spoken of since the web started
        rows = await request.app[STORE].call(read_gpus, [])
    except StoreError:  # the page itself must come: the script says what is wrong
        rows = []
    gpus.extend((row.host, row.gpu_index, row.gpu_name) for row in rows)
    view = request.query.get("view")
    if view == "fleet" or (view != "cards" and len({gpu[:2] for gpu in gpus}) >= FLEET_MIN_GPUS):
        return FirstPaint([], fleet=True)
    return FirstPaint(group(gpus, request.query.get("host") or None), fleet=False)
