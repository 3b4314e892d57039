"""The dashboard's view (cards or fleet) is chosen by the server alone and told to the script.

The page's first paint (skeleton.py) and its script (js/fleet.js, reading the page's config)
show the same view: one threshold, FLEET_MIN_GPUS, counted once, by UUID.
"""

from __future__ import annotations

import json
import re

import pytest

from services.web.app import create_app
from services.web.skeleton import FLEET_MIN_GPUS, choose_fleet

CONFIG_RE = re.compile(r'<script type="application/json" id="pcw-config">(.*?)</script>')


@pytest.mark.parametrize(
    ("asked", "gpus", "fleet"),
    [
        (None, FLEET_MIN_GPUS - 1, False),
        (None, FLEET_MIN_GPUS, True),
        ("cards", 256, False),
        ("fleet", 1, True),
        ("tiles", FLEET_MIN_GPUS, True),  # a view the page has not: the count decides
        ("tiles", 2, False),
    ],
)
def test_the_url_chooses_else_the_gpu_count(asked: str | None, gpus: int, fleet: bool):
    assert choose_fleet(asked, gpus) is fleet


async def test_the_page_tells_its_script_the_view_it_painted(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    for query, view in [("", "cards"), ("?view=fleet", "fleet"), ("?view=cards", "cards")]:
        page = await (await client.get("/" + query)).text()
        (said,) = CONFIG_RE.findall(page)
        assert json.loads(said)["view"] == view, query
        fleet_place = re.search(r'<section id="fleet"[^>]*>', page).group()
        assert ("fleet-place" in fleet_place) is (view == "fleet"), query
