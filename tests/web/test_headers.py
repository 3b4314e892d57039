"""Security headers on every answer: the page, assets, the API, errors and the websocket."""

from __future__ import annotations

import pytest

from services.web.app import create_app
from services.web.headers import SECURITY_HEADERS


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


def assert_secured(headers) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, name
    assert "aiohttp" not in headers.get("Server", "").lower()


@pytest.mark.parametrize(
    ("url", "status"),
    [
        ("/", 200),
        ("/static/app.js", 200),
        ("/static/dist/bootstrap.css", 200),
        ("/api/v1/gpus", 200),
        ("/api/v1/history?metric=nope", 400),
        ("/no/such/page", 404),
        ("/healthz", 503),
    ],
)
async def test_every_answer_carries_the_headers(client, url, status):
    response = await client.get(url)
    assert response.status == status
    assert_secured(response.headers)


async def test_the_policy_allows_only_the_pages_own_assets(client):
    policy = dict(
        part.strip().split(" ", 1)
        for part in SECURITY_HEADERS["Content-Security-Policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    for directive in ("script-src", "style-src", "connect-src", "font-src"):
        assert policy[directive] == "'self'"
    assert policy["img-src"] == "'self' data:"
    assert policy["frame-ancestors"] == policy["base-uri"] == policy["form-action"] == "'none'"
    page = await (await client.get("/")).text()
    assert "<style" not in page and " style=" not in page and " on" + "click=" not in page
    assert "https://" not in page  # no asset from elsewhere


async def test_the_websocket_handshake_carries_them(client):
    async with client.ws_connect("/ws") as ws:
        assert_secured(ws._response.headers)


async def test_a_wrong_method_carries_them(client):
    response = await client.post("/api/v1/gpus")
    assert response.status == 405
    assert_secured(response.headers)
