"""GET /gpu/{uuid}: a known GPU's page, a 404 page for an unknown one, secured as the index is."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest

from services.web.app import create_app
from tests.web.conftest import UUID_A, UUID_B, make_config
from tests.web.test_auth import GOOD, auth_file, user_line  # noqa: F401 (fixtures)
from tests.web.test_headers import assert_secured
from tests.web.test_page_modules import ENTRY_RE, _module_graph


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def test_a_stored_gpu_has_its_page_with_its_own_script(client):
    response = await client.get(f"/gpu/{UUID_A}")
    assert response.status == 200
    assert response.content_type == "text/html"
    assert_secured(response.headers)
    page = await response.text()
    assert "GPU 0" in page and "NVIDIA Test GPU" in page and "alpha" in page
    (entry,) = ENTRY_RE.findall(page)
    assert re.fullmatch(r"/static/dist/js/gpu_page\.js\?v=[\w%-]+", entry)
    paths = {urlsplit(url).path for url in await _module_graph(client, entry)}
    assert {"/static/dist/js/gpu_charts.js", "/static/dist/js/format.js"} <= paths


async def test_a_gpu_name_is_escaped_in_the_page(client):
    page = await (await client.get(f"/gpu/{UUID_B}")).text()
    assert "<b>GPU & co</b>" not in page
    assert "&lt;b&gt;GPU &amp; co&lt;/b&gt;" in page


@pytest.mark.parametrize("asked", ["GPU-not-here", "<script>x</script>", "a" * 300])
async def test_an_unknown_uuid_is_a_404_page_that_says_so(client, asked):
    response = await client.get(f"/gpu/{quote(asked, safe='')}")
    assert response.status == 404
    assert response.content_type == "text/html"
    assert_secured(response.headers)
    page = await response.text()
    assert "Unknown GPU" in page
    assert "<script>x</script>" not in page
    assert not ENTRY_RE.findall(page)  # nothing to load for a GPU that is not there


async def test_the_page_asks_for_the_sign_in_as_the_index_does(aiohttp_client, config, auth_file):  # noqa: F811
    app = create_app(make_config(Path(config.db_path), PCW_AUTH_FILE=str(auth_file)))
    client = await aiohttp_client(app)
    assert (await client.get(f"/gpu/{UUID_A}")).status == 401
    assert (await client.get("/gpu/GPU-not-here")).status == 401  # no answer says what exists
    assert (await client.get(f"/gpu/{UUID_A}", headers=GOOD)).status == 200
