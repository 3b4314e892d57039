"""The page's script is native ES modules: every import is served, compressed and never stale."""

from __future__ import annotations

import re
from urllib.parse import urljoin, urlsplit

import pytest

from services.web.app import create_app

# `import { a, b } from './x.js';` over one or more lines; the page's modules import no other way
IMPORT_RE = re.compile(r"^import\s*\{[^}]*\}\s*from\s*'([^']+)';", re.MULTILINE)
JAVASCRIPT_TYPES = ("text/javascript", "application/javascript")
ENTRY_RE = re.compile(r'<script type="module" src="([^"]+)"></script>')


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def _module_graph(client, entry_url: str) -> dict[str, str]:
    """Return every module the entry imports, directly or not, by path, with its source text."""
    sources: dict[str, str] = {}
    waiting = [entry_url]
    while waiting:
        url = waiting.pop()
        path = urlsplit(url).path
        if path in sources:
            continue
        response = await client.get(url)
        assert response.status == 200, url
        # a browser runs a module only when it is served as JavaScript
        assert response.content_type in JAVASCRIPT_TYPES, url
        sources[path] = await response.text()
        waiting.extend(urljoin(url, target) for target in IMPORT_RE.findall(sources[path]))
    return sources


async def test_the_page_loads_its_script_as_a_module_by_a_versioned_url(client):
    page = await (await client.get("/")).text()
    (entry,) = ENTRY_RE.findall(page)
    assert re.fullmatch(r"/static/app\.js\?v=[\w%-]+", entry)
    sources = await _module_graph(client, entry)
    assert len(sources) > 10  # the entry and the modules it wires
    assert all(IMPORT_RE.search(text) for path, text in sources.items() if path.endswith("app.js"))


async def test_every_imported_module_is_revalidated_and_gzipped(client):
    page = await (await client.get("/")).text()
    (entry,) = ENTRY_RE.findall(page)
    modules = [path for path in await _module_graph(client, entry) if path != "/static/app.js"]
    assert modules and all(path.startswith("/static/js/") for path in modules)
    for path in modules:
        # Imported by a URL without ?v=, so a new release's entry must never meet a stale module
        # from the browser's cache: asked again on every load, answered 304 while unchanged.
        response = await client.get(path)
        assert response.headers["Cache-Control"] == "no-cache", path
        assert response.headers["Content-Encoding"] == "gzip", path
        etag = response.headers["ETag"]
        again = await client.get(path, headers={"If-None-Match": etag})
        assert again.status == 304, path
    # the entry itself, asked for by its hash, is still cached for a day
    assert (await client.get(entry)).headers["Cache-Control"] == "public, max-age=86400"
