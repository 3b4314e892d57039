"""The page's script is native ES modules, minified: every import is served, preloaded,
compressed and cached a year by a URL that changes with any module; the readable sources stay."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from services.web.app import STATIC_DIR, create_app

# `import { a, b } from './x.js';` over one or more lines, or minified: `import{a,b}from'./x.js'`
IMPORT_RE = re.compile(r"""\bimport\s*\{[^}]*\}\s*from\s*['"]([^'"]+)['"]""")
JAVASCRIPT_TYPES = ("text/javascript", "application/javascript")
ENTRY_RE = re.compile(r'<script type="module" src="([^"]+)"></script>')
PRELOAD_RE = re.compile(r'<link rel="modulepreload" href="([^"]+)">')
YEAR = "public, max-age=31536000, immutable"


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def _module_graph(client, entry_url: str) -> dict[str, str]:
    """Return every module URL the entry imports, directly or not, with its source text."""
    sources: dict[str, str] = {}
    waiting = [entry_url]
    while waiting:
        url = waiting.pop()
        if url in sources:
            continue
        response = await client.get(url)
        assert response.status == 200, url
        # a browser runs a module only when it is served as JavaScript
        assert response.content_type in JAVASCRIPT_TYPES, url
        sources[url] = await response.text()
        waiting.extend(urljoin(url, target) for target in IMPORT_RE.findall(sources[url]))
    return sources


async def test_the_page_loads_its_minified_script_as_a_module_by_a_versioned_url(client):
    page = await (await client.get("/")).text()
    (entry,) = ENTRY_RE.findall(page)
    assert re.fullmatch(r"/static/dist/app\.js\?v=[\w%-]+", entry)
    sources = await _module_graph(client, entry)
    assert len(sources) > 10  # the entry and the modules it wires
    # minified: no comment and no indented line is left of the readable source's
    readable = (STATIC_DIR / "app.js").read_text()
    assert "/*" in readable and "/*" not in sources[entry] and "\n  " not in sources[entry]
    assert len(sources[entry]) < 0.6 * len(readable)


async def test_every_imported_module_is_preloaded_by_the_url_it_is_imported_by(client):
    page = await (await client.get("/")).text()
    (entry,) = ENTRY_RE.findall(page)
    imported = set(await _module_graph(client, entry)) - {entry}
    # the browser fetches them all at once, and each only once: the URLs are the same
    assert set(PRELOAD_RE.findall(page)) == imported
    assert all(re.fullmatch(r"/static/dist/js/[\w-]+\.js\?v=\w+", url) for url in imported)
    # one build version for all, so that a change to any module changes every module's URL
    assert len({urlsplit(url).query for url in imported}) == 1


async def test_every_module_is_cached_a_year_and_gzipped(client):
    page = await (await client.get("/")).text()
    (entry,) = ENTRY_RE.findall(page)
    for url in await _module_graph(client, entry):
        response = await client.get(url, headers={"Accept-Encoding": "gzip"})
        assert response.headers["Cache-Control"] == YEAR, url
        assert response.headers["Content-Encoding"] == "gzip", url


async def test_each_built_module_has_its_readable_source_served_beside_it(client):
    page = await (await client.get("/")).text()
    (entry,) = ENTRY_RE.findall(page)
    for url in await _module_graph(client, entry):
        readable = urlsplit(url).path.replace("/static/dist/", "/static/", 1)
        response = await client.get(readable)
        assert response.status == 200, readable
        # asked for without ?v= (as the readable modules import each other): revalidated
        assert response.headers["Cache-Control"] == "no-cache", readable
        again = await client.get(readable, headers={"If-None-Match": response.headers["ETag"]})
        assert again.status == 304, readable
