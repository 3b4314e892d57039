"""The built assets (static/dist/): up to date with their sources, purged and minified right;
and the page's first paint: the cards' places, a description, no source map to ask for."""

from __future__ import annotations

import asyncio
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.web.app import STATIC_DIR, create_app
from tests.web.conftest import create_db, feed_connected, make_config, make_tick

ROOT = Path(__file__).resolve().parents[2]
SKELETON_RE = re.compile(r'class="card skeleton-card')
FLEET_TOGGLE_SHOWN = '<nav id="view-toggle" class="fleet-toggle mb-3" aria-label="Dashboard view">'
HISTORY_HIDDEN = (
    '<section id="history" aria-labelledby="history-title" class="mt-4 page-part" hidden>'
)
LINK_RE = re.compile(r'<(?:link|script)[^>]+(?:href|src)="(/static/[^"?]+)')


def _asset_build():
    """Import scripts/asset_build.py, which is a script's module, not a package's."""
    if str(ROOT / "scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "scripts"))  # where it finds its sibling js_minify
    spec = importlib.util.spec_from_file_location(
        "asset_build", ROOT / "scripts" / "asset_build.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_built_assets_are_what_their_sources_build():
    """Edited a template or a script? Run `python scripts/update_assets.py --build`."""
    done = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "update_assets.py"), "--build", "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_a_rebuild_gives_the_same_bytes():
    build = _asset_build()
    assert build.built_files() == build.built_files()


def test_the_purge_keeps_the_rules_a_page_uses_and_drops_the_others():
    build = _asset_build()
    words, prefixes = build.used_names(
        ['<div class="card btn">', "el.className = `text-bg-${kind}`;"]
    )
    css = (
        ":root{--bs-blue:#0d6efd}.card{color:red}.carousel{color:blue}"
        ".carousel,.btn{margin:0}.btn:not(.disabled){opacity:1}"
        ".text-bg-danger{color:#fff}.carousel .btn{x:1}"
        "@media (min-width:576px){.carousel{a:b}.card{c:d}}"
        "@media print{.carousel-item{a:b}}"
        "@keyframes spin{to{transform:rotate(1turn)}}"
        "/*# sourceMappingURL=bootstrap.min.css.map */"
    )
    purged = build.purge_css(css, words, prefixes)
    assert ":root{--bs-blue:#0d6efd}" in purged  # no class: kept
    assert ".card{color:red}" in purged and ".carousel{color:blue}" not in purged
    assert ".btn{margin:0}" in purged  # the used half of a selector list
    assert ".btn:not(.disabled){opacity:1}" in purged  # :not() of an unused class still matches
    assert ".text-bg-danger" in purged  # a class a script completes at run time
    assert ".carousel .btn" not in purged
    assert "@media (min-width:576px){.card{c:d}}" in purged
    assert "@media print" not in purged  # nothing left in it
    assert "@keyframes spin" in purged
    assert "sourceMappingURL" not in purged


def test_the_purged_bootstrap_is_much_smaller_and_keeps_what_the_page_uses():
    purged = (STATIC_DIR / "dist" / "bootstrap.css").read_text()
    full = (STATIC_DIR / "vendor" / "bootstrap" / "bootstrap.min.css").read_text()
    assert len(purged) < 0.25 * len(full)
    for selector in (".card-header", ".btn-outline-secondary", ".row-cols-lg-2", ".text-bg-danger"):
        assert selector in purged, selector
    for selector in (".carousel", ".offcanvas", ".accordion", ".toast"):
        assert selector not in purged, selector


def test_a_minified_module_keeps_its_template_literals():
    build = _asset_build()
    source = "// a comment\nconst a = `x  ${1 + 2}\n  y`;  /* more */\nexport { a };\n"
    minified = build.rjsmin.jsmin(source)
    assert "`x  ${1 + 2}\n  y`" in minified and "comment" not in minified


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def test_the_page_has_a_description_and_loads_the_built_assets(client):
    page = await (await client.get("/")).text()
    assert re.search(r'<meta name="description" content="[^"]{50,160}">', page)
    assets = LINK_RE.findall(page)
    assert "/static/dist/bootstrap.css" in assets
    assert "/static/vendor/bootstrap/bootstrap.min.css" not in assets
    for path in assets:
        body = await (await client.get(path)).read()
        assert b"sourceMappingURL" not in body, path  # its .map would be a 404


async def test_the_page_has_a_place_for_each_stored_gpu_in_the_first_paint(client):
    # the fixture file: alpha with GPUs 0 and 1, beta with GPU 0
    page = await (await client.get("/")).text()
    assert len(SKELETON_RE.findall(page)) == 3
    assert "Waiting for the first reading" not in page
    assert page.index(">alpha<") < page.index(">beta<")  # hosts as the script orders them
    assert "&lt;b&gt;GPU &amp; co&lt;/b&gt;" in page and "<b>GPU" not in page  # escaped
    page = await (await client.get("/?host=beta")).text()
    assert len(SKELETON_RE.findall(page)) == 1


async def test_the_page_without_any_gpu_says_it_waits(aiohttp_client, tmp_path):
    create_db(tmp_path / "empty.db").close()
    client = await aiohttp_client(create_app(make_config(tmp_path / "empty.db")))
    page = await (await client.get("/")).text()
    assert "Waiting for the first reading" in page and not SKELETON_RE.findall(page)


async def test_live_gpus_have_their_places_and_a_fleet_has_none(
    aiohttp_client, live_config, publisher
):
    client = await aiohttp_client(create_app(live_config))
    pub = publisher[0]
    await feed_connected(client.app, pub)
    pub.send_multipart(make_tick(host="gamma", ts=time.time(), gpu_count=4).to_frames())

    async def seen() -> bool:
        page = await (await client.get("/?host=gamma")).text()
        return len(SKELETON_RE.findall(page)) == 4

    deadline = time.monotonic() + 5
    while not await seen():
        assert time.monotonic() < deadline, "the live GPUs never got their places"
        await asyncio.sleep(0.05)
    # from 17 GPUs on the page shows the fleet view: no card, so no card's place
    pub.send_multipart(make_tick(host="delta", ts=time.time(), gpu_count=17).to_frames())
    deadline = time.monotonic() + 5
    while SKELETON_RE.findall(await (await client.get("/")).text()):
        assert time.monotonic() < deadline, "the fleet still got cards' places"
        await asyncio.sleep(0.05)
    # ... but the fleet's place, with the cards and the charts hidden, so that nothing moves
    page = await (await client.get("/")).text()
    assert '<section id="fleet" aria-labelledby="fleet-title" class="fleet-place">' in page
    assert '<section id="gpu-cards" aria-label="GPUs" hidden>' in page
    assert FLEET_TOGGLE_SHOWN in page and HISTORY_HIDDEN in page
    assert 'aria-label="Host shown" hidden>' in page  # the navbar's height is the fleet's
    page = await (await client.get("/?view=cards&host=delta")).text()
    assert len(SKELETON_RE.findall(page)) == 17
    assert 'class="fleet-place"' not in page and FLEET_TOGGLE_SHOWN in page  # either view
