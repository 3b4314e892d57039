"""Answers at the edges: requests aiohttp cannot read, a missing asset, an empty `by`, the
scheme of a websocket's Origin. Malformed requests go over a raw socket, as a hostile client sends.
"""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest

from services.web.app import create_app
from services.web.headers import SECURITY_HEADERS
from services.web.websocket import origin_allowed


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def raw_exchange(port: int, request: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read the whole answer; return status, headers (lower-case names), body."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(request)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), timeout=10)
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


LONG_URL = b"GET /api/v1/gpus?x=" + b"a" * 20_000 + b" HTTP/1.1\r\nHost: localhost\r\n\r\n"
MANY_HEADERS = (
    b"GET /api/v1/gpus HTTP/1.1\r\nHost: localhost\r\n"
    + b"".join(b"X-Filler-%d: 1\r\n" % number for number in range(500))
    + b"\r\n"
)
LONG_HEADER = b"GET / HTTP/1.1\r\nHost: localhost\r\nX-Long: " + b"a" * 20_000 + b"\r\n\r\n"


@pytest.mark.parametrize(
    "request_bytes", [LONG_URL, MANY_HEADERS, LONG_HEADER], ids=["url", "headers", "header"]
)
async def test_a_request_aiohttp_cannot_read_is_a_json_400_with_our_headers(client, request_bytes):
    status, headers, body = await raw_exchange(client.server.port, request_bytes)
    assert status == 400
    assert headers["server"] == "pyCudaWatch"
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name.lower()) == value, name
    assert headers["content-type"].startswith("application/json")
    assert int(headers["content-length"]) == len(body)
    assert "error" in json.loads(body)
    assert b"aaaa" not in body  # the request is not echoed back


async def test_a_missing_static_file_is_a_json_404_that_is_not_cached(client):
    response = await client.get("/static/no-such-file.js")
    assert response.status == 404
    assert "max-age" not in response.headers.get("Cache-Control", "")
    assert "error" in await response.json()
    served = await client.get("/static/app.js?v=1")  # a file that is there is still cached
    assert served.status == 200 and "max-age=31536000" in served.headers["Cache-Control"]


@pytest.mark.parametrize("query", ["by=", "by=%20"])
async def test_an_empty_usage_grouping_is_refused(client, query):
    response = await client.get(f"/api/v1/usage?{query}")
    assert response.status == 400
    assert "by=" in (await response.json())["error"]


def test_an_origin_of_another_scheme_is_refused():
    assert origin_allowed("http://gpu.example:8000", "gpu.example:8000", "http")
    assert not origin_allowed("https://gpu.example:8000", "gpu.example:8000", "http")
    assert not origin_allowed("http://gpu.example", "gpu.example", "https")
    assert not origin_allowed("ftp://gpu.example", "gpu.example", "http")
    assert origin_allowed("https://gpu.example", "gpu.example", "https")


async def test_the_websocket_refuses_an_origin_of_another_scheme(client):
    own = f"{client.server.host}:{client.server.port}"
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": f"https://{own}"})
    assert refused.value.status == 403
    ws = await client.ws_connect("/ws", headers={"Origin": f"http://{own}"})
    await ws.close()


async def test_behind_a_tls_proxy_the_forwarded_scheme_is_the_pages(client):
    own = f"{client.server.host}:{client.server.port}"
    proxied = {"X-Forwarded-Proto": "https"}
    ws = await client.ws_connect("/ws", headers={"Origin": f"https://{own}", **proxied})
    await ws.close()
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws", headers={"Origin": f"http://{own}", **proxied})
    assert refused.value.status == 403
