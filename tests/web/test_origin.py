"""The websocket accepts a browser only from the page's own origin: host and port, exactly.

Through the real handshake: the test client's Host is 127.0.0.1:PORT, and each Origin below is
one a hostile page could send.
"""

from __future__ import annotations

import aiohttp
import pytest

from services.web.app import create_app
from services.web.websocket import origin_allowed


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


def own(client) -> str:
    return f"{client.host}:{client.port}"


async def refused(client, origin: str) -> int:
    with pytest.raises(aiohttp.WSServerHandshakeError) as error:
        await client.ws_connect("/ws", headers={"Origin": origin})
    return error.value.status


async def test_the_pages_own_origin_is_let_in(client):
    ws = await client.ws_connect("/ws", headers={"Origin": f"http://{own(client)}"})
    assert not ws.closed
    await ws.close()


async def test_no_origin_is_a_client_that_is_not_a_browser(client):
    ws = await client.ws_connect("/ws")
    assert not ws.closed
    await ws.close()


@pytest.mark.parametrize(
    "make_origin",
    [
        pytest.param(lambda host, port: f"http://{host}:{port + 1}", id="another port"),
        pytest.param(lambda host, port: f"http://{host}:{port - 1}", id="a port below"),
        pytest.param(lambda host, port: f"http://{host}", id="no port"),
        pytest.param(lambda host, port: f"http://{host}:{port}0", id="the port with a digit more"),
        pytest.param(lambda host, port: f"http://{host}:{str(port)[:-1]}", id="a shorter port"),
        pytest.param(lambda host, port: f"http://evil.{host}:{port}", id="a suffix host"),
        pytest.param(lambda host, port: f"http://x{host}:{port}", id="a longer host"),
        pytest.param(
            lambda host, port: f"http://{host}:{port}.evil.example", id="a substring host"
        ),
        pytest.param(lambda host, port: f"http://{host}:{port}@evil.example", id="userinfo"),
        pytest.param(lambda host, port: f"http://evil.example/{host}:{port}", id="in the path"),
        pytest.param(lambda host, port: "null", id="null"),
        pytest.param(lambda host, port: "", id="empty"),
        pytest.param(lambda host, port: f"http://[{host}:{port}", id="not a URL"),
    ],
)
async def test_an_origin_that_is_not_exactly_the_host_is_refused(client, make_origin):
    origin = make_origin(client.host, client.port)
    assert await refused(client, origin) == 403


async def test_host_names_compare_without_case(client):
    headers = {
        "Host": f"Dash.Example:{client.port}",
        "Origin": f"http://dash.example:{client.port}",
    }
    ws = await client.ws_connect("/ws", headers=headers)
    assert not ws.closed
    await ws.close()
    headers["Origin"] = f"http://DASH.EXAMPLE:{client.port}"
    ws = await client.ws_connect("/ws", headers=headers)
    assert not ws.closed
    await ws.close()


def test_a_request_without_a_host_lets_no_browser_in():
    # aiohttp always gives a host (the machine's name without a Host header); the check must
    # still refuse on its own
    assert not origin_allowed("http://a.example", None, "http")
    assert not origin_allowed("http://a.example", "", "http")
    assert origin_allowed(None, None, "http")
