"""The hub frames each message once and writes it to every websocket: real aiohttp connections."""

from __future__ import annotations

from aiohttp import web

from services.web.hub import Hub

HUB_KEY = web.AppKey("hub", Hub)


def hub_app(hub: Hub) -> web.Application:
    """Return an app whose /ws joins the hub with a greeting, like services/web/websocket.py."""

    async def handler(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(compress=False)
        await ws.prepare(request)
        request.app[HUB_KEY].join(ws, request.transport, "test", "hello")
        try:
            async for _message in ws:
                pass
        finally:
            request.app[HUB_KEY].leave(ws)
        return ws

    app = web.Application()
    app[HUB_KEY] = hub
    app.router.add_get("/ws", handler)
    return app


async def test_every_length_of_message_reaches_every_client_intact(aiohttp_client):
    hub = Hub()
    client = await aiohttp_client(hub_app(hub))
    sockets = [await client.ws_connect("/ws") for _ in range(3)]
    for ws in sockets:
        assert (await ws.receive_str(timeout=5)) == "hello"
    # each length form of the frame header (7-bit, 16-bit, 64-bit), and text beyond ASCII
    messages = ["", "x" * 125, "y" * 126, "é" * 40_000, "z" * 65_535, "w" * 65_536, "v" * 300_000]
    for message in messages:
        hub.publish(message)
    for ws in sockets:
        assert [await ws.receive_str(timeout=5) for _ in messages] == messages
    await sockets[0].close()
    for ws in sockets[1:]:
        hub.publish("after one left")
        assert (await ws.receive_str(timeout=5)) == "after one left"
    for ws in sockets[1:]:
        await ws.close()
    assert hub.dropped_clients == 0


async def test_a_client_that_closed_gets_nothing_more_and_others_go_on(aiohttp_client):
    hub = Hub()
    client = await aiohttp_client(hub_app(hub))
    leaving = await client.ws_connect("/ws")
    staying = await client.ws_connect("/ws")
    for ws in (leaving, staying):
        assert (await ws.receive_str(timeout=5)) == "hello"
    await leaving.close()
    hub.publish("tick")
    assert (await staying.receive_str(timeout=5)) == "tick"
    assert leaving.closed
    assert hub.dropped_clients == 0
    await staying.close()
