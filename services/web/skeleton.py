"""The cards' places in the first paint: each host and GPU the web already knows, by name.

The page's script builds the GPU cards after it has loaded and asked the server; until then the
page had one line, "Waiting for the first reading…", and the cards then pushed everything under
them a screen down (a layout shift of 0.6-0.85 on load). The page is now served with one empty
card of the right size per GPU, grouped by host as the script groups them, taken from the live
feed's newest ticks and the file's GPUs (the live name first), as /api/v1/gpus lists them.
The script hides these places as it puts its first host's cards in (hosts.js).

Which view the page shows is chosen here alone (FLEET_MIN_GPUS) and told to the script in the
page's config (index.html's page_script: "view"), so that the first paint and the page agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from services.web.gpu_reads import read_gpus
from services.web.keys import FEED, STORE
from services.web.store import StoreError

MAX_SKELETON_GPUS = 256  # a bigger fleet gets places for the first ones: the rest is below
# From this many GPUs on (counted by UUID, as /api/v1/gpus lists them and the page draws a card
# or a row for each), without ?view=cards, the page shows the fleet view and no card at all: past
# 16, two cards a row fill screens. The one threshold: the script is told the view chosen.
FLEET_MIN_GPUS = 17
VIEWS = ("cards", "fleet")


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

    @property
    def view(self) -> str:
        """Return the view's name as the URL and the page's script say it: cards or fleet."""
        return "fleet" if self.fleet else "cards"


def choose_fleet(view_asked: str | None, gpu_count: int) -> bool:
    """Return whether the page shows the fleet view: the URL's ?view, else the GPU count."""
    if view_asked in VIEWS:
        return view_asked == "fleet"
    return gpu_count >= FLEET_MIN_GPUS


async def first_paint(request: web.Request) -> FirstPaint:
    """Return the places of the cards the page will show, or that it shows the fleet view.

    In the fleet view the page is served with the fleet's place already taken (and the cards'
    and the charts' sections hidden), so that the table coming in moves nothing below it.
    """
    ticks = request.app[FEED].latest_ticks()
    gpus = [(tick.host, reading.index, reading.name) for tick in ticks for reading in tick.gpus]
    uuids = {reading.uuid for tick in ticks for reading in tick.gpus}
    try:  # the file also knows the GPUs no sampler has spoken of since the web started
        rows = await request.app[STORE].call(read_gpus, [])
    except StoreError:  # the page itself must come: the script says what is wrong
        rows = []
    gpus.extend((row.host, row.gpu_index, row.gpu_name) for row in rows)
    uuids.update(row.gpu_uuid for row in rows)
    if choose_fleet(request.query.get("view"), len(uuids)):
        return FirstPaint([], fleet=True)
    return FirstPaint(group(gpus, request.query.get("host") or None), fleet=False)
