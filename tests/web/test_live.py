"""The live path: real ZeroMQ into the app, out over websockets; and /healthz."""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import replace

import aiohttp
import msgspec
import pytest
import zmq

from common.messages import MAX_MESSAGE_BYTES, TOPIC, Tick
from common.status import WriterStatus, write_status
from services.web.app import create_app
from services.web.feed import RESTORE_AFTER_S
from services.web.keys import COUNTERS, FEED, HUB
from tests.web.conftest import (
    T0,
    UUID_A,
    add_gpu,
    create_db,
    feed_connected,
    make_config,
    make_tick,
    wait_until,
)


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout_s: float = 5.0) -> dict:
    message = await ws.receive(timeout=timeout_s)
    assert message.type == aiohttp.WSMsgType.TEXT, message
    return json.loads(message.data)


async def receive_tick(ws, host: str, timeout_s: float = 5.0) -> dict:
    """Return the next tick message of `host`, skipping probes."""
    while True:
        body = await receive_json(ws, timeout_s)
        if body["type"] == "tick" and body["tick"]["host"] == host:
            return body


async def test_snapshot_on_connect_then_ticks_reach_two_clients(live_client, publisher):
    pub = publisher[0]
    pub.send_multipart(make_tick(host="alpha", seq=1, ts=time.time(), util_gpu_pct=12).to_frames())
    await wait_until(lambda: "alpha" in {t.host for t in live_client.app[FEED].latest_ticks()})

    first = await live_client.ws_connect("/ws")
    second = await live_client.ws_connect("/ws")
    for ws in (first, second):
        snapshot = await receive_json(ws)
        assert snapshot["type"] == "snapshot"
        hosts = [tick["host"] for tick in snapshot["ticks"]]
        assert hosts == sorted(hosts) and "alpha" in hosts
        alpha = next(t for t in snapshot["ticks"] if t["host"] == "alpha")
        assert alpha["gpus"][0]["latest"]["util_gpu_pct"] == 12
    assert live_client.app[HUB].client_count == 2

    tick = make_tick(host="alpha", seq=2, ts=time.time(), util_gpu_pct=34, temp_c=55)
    pub.send_multipart(tick.to_frames())
    got = [await receive_tick(ws, "alpha") for ws in (first, second)]
    assert got[0] == got[1]
    assert set(got[0]["tick"]) == set(Tick.__struct_fields__)
    assert got[0]["tick"]["seq"] == 2
    assert got[0]["tick"]["gpus"][0]["latest"]["util_gpu_pct"] == 34
    assert got[0]["tick"]["gpus"][0]["latest"]["fan_pct"] is None
    await first.close()
    await second.close()
    await wait_until(lambda: live_client.app[HUB].client_count == 0)


async def test_a_live_gpu_shows_before_the_writer_flushes(live_client, publisher):
    now = time.time()
    pub = publisher[0]
    pub.send_multipart(make_tick(host="alpha", seq=1, ts=now, gpu_count=2, temp_c=70).to_frames())
    await wait_until(lambda: "alpha" in {t.host for t in live_client.app[FEED].latest_ticks()})
    gpus = (await (await live_client.get("/api/v1/gpus")).json())["gpus"]
    by_uuid = {g["gpu_uuid"]: g for g in gpus}
    assert by_uuid[UUID_A]["latest"]["ts"] == now  # newer than the file's reading
    assert by_uuid[UUID_A]["latest"]["temp_c"] == 70
    assert by_uuid[UUID_A]["first_ts"] < now  # kept from the file
    assert by_uuid["GPU-live-alpha-1"]["latest"]["temp_c"] == 70  # not in the file at all
    assert [g["host"] for g in gpus] == sorted(g["host"] for g in gpus)
    history = await live_client.get("/api/v1/history", params={"gpu": "GPU-live-alpha-1"})
    assert history.status == 200
    assert set((await history.json())["series"][0]["count"]) == {0}


async def test_a_stalled_client_is_dropped_and_the_others_go_on(
    aiohttp_client, live_config, publisher
):
    small = replace(live_config, ws_send_buffer_bytes=65_536)
    app = create_app(small)
    client = await aiohttp_client(app)
    pub = publisher[0]
    await feed_connected(app, pub)
    stalled = await client.ws_connect("/ws")  # never reads a message
    reader = await client.ws_connect("/ws")
    received: list[int] = []

    async def read_all() -> None:
        while True:
            message = await reader.receive()
            if message.type != aiohttp.WSMsgType.TEXT:
                return
            body = json.loads(message.data)
            if body["type"] == "tick" and body["tick"]["host"] == "big":
                received.append(body["tick"]["seq"])

    reading = asyncio.create_task(read_all())
    # ~350 KB of JSON per tick fills the stalled socket's buffers within a few dozen ticks
    # (paced by the reader, so that only the stalled client can fall behind)
    seq = 0
    while app[HUB].dropped_clients == 0 and seq < 400:
        big = make_tick(host="big", seq=seq, ts=time.time(), gpu_count=1024, util_gpu_pct=50)
        pub.send_multipart(big.to_frames())
        await wait_until(lambda n=seq: n in received, timeout_s=10, what=f"tick {seq} to arrive")
        seq += 1
    assert app[HUB].dropped_clients == 1
    pub.send_multipart(make_tick(host="big", seq=seq, ts=time.time()).to_frames())
    await wait_until(lambda: seq in received, timeout_s=10, what="the reader to get every tick")
    assert received == list(range(seq + 1))  # nothing skipped for the one that keeps up
    assert app[HUB].client_count == 1
    reading.cancel()
    await reader.close()
    stalled_close = await stalled.receive(timeout=10)  # its queue is long gone: it gets the close
    assert stalled_close.type in (
        aiohttp.WSMsgType.TEXT,
        aiohttp.WSMsgType.CLOSE,
        aiohttp.WSMsgType.CLOSED,
        aiohttp.WSMsgType.ERROR,
    )


async def test_a_burst_from_many_hosts_drops_nobody(live_client, publisher):
    """Every host of a hub ticks at :00: far more messages at once than a send queue holds."""
    ws = await live_client.ws_connect("/ws")
    assert (await receive_json(ws))["type"] == "snapshot"
    hosts = [f"node{k:02d}" for k in range(60)]
    now = time.time()
    for seq, host in enumerate(hosts):
        publisher[0].send_multipart(make_tick(host=host, seq=seq, ts=now).to_frames())
    seen = []
    while len(seen) < len(hosts):
        body = await receive_json(ws)
        if body["type"] == "tick" and body["tick"]["host"].startswith("node"):
            seen.append(body["tick"]["host"])
    assert seen == hosts
    assert live_client.app[HUB].dropped_clients == 0
    await ws.close()


async def test_a_foreign_origin_is_refused(live_client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await live_client.ws_connect("/ws", headers={"Origin": "http://evil.example"})
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError):
        await live_client.ws_connect("/ws", headers={"Origin": "null"})
    own = f"http://{live_client.host}:{live_client.port}"
    ws = await live_client.ws_connect("/ws", headers={"Origin": own})
    assert (await receive_json(ws))["type"] == "snapshot"
    await ws.close()


def malformed_messages() -> dict[str, list[bytes]]:
    """Return a message of every kind the feed must count and drop, by what is wrong with it."""
    good = make_tick(host="alpha", seq=1, ts=T0 + 400, util_gpu_pct=5).to_frames()
    fields = msgspec.msgpack.decode(good[2])

    def changed(**changes: object) -> list[bytes]:
        return [TOPIC, b"1", msgspec.msgpack.encode({**fields, **changes})]

    gpu = fields["gpus"][0]
    return {
        "random bytes": [TOPIC, b"1", b"\xc1 not msgpack"],
        "an empty payload": [TOPIC, b"1", b""],
        "a truncated payload": [TOPIC, b"1", good[2][: len(good[2]) // 2]],
        "one frame": [TOPIC],
        "two frames": [TOPIC, b"1"],
        "four frames": [*good, b"extra"],
        "a topic that only starts like ours": [TOPIC + b".v2", b"1", good[2]],
        "an unknown schema version": [TOPIC, b"99", good[2]],
        "an empty schema version": [TOPIC, b"", good[2]],
        "a text seq": changed(seq="seven"),
        "a missing host": [TOPIC, b"1", msgspec.msgpack.encode({**fields, "host": None})],
        "a timestamp of 0": changed(ts=0),
        "a NaN timestamp": changed(ts=float("nan")),
        "gpus as a map": changed(gpus={"0": gpu}),
        "a utilization of 101 %": changed(gpus=[{**gpu, "util_gpu_pct": 101}]),
        "a field nobody knows": changed(extra=1),
        "text that is not UTF-8": [TOPIC, b"1", good[2].replace(b"alpha", b"\xffalph")],
        "an array, not a map": [TOPIC, b"1", msgspec.msgpack.encode([1, 2, 3])],
        "arrays nested a million deep": [TOPIC, b"1", b"\x91" * 1_000_000 + b"\xc0"],
        "an array that claims 4 G items": [TOPIC, b"1", b"\xdd\xff\xff\xff\xff"],
    }


async def test_a_malformed_message_of_any_kind_is_counted_and_dropped(live_client, publisher):
    pub = publisher[0]
    feed = live_client.app[FEED]
    ws = await live_client.ws_connect("/ws")
    assert (await receive_json(ws))["type"] == "snapshot"
    received = feed.received_ticks
    for count, (what, frames) in enumerate(malformed_messages().items(), start=1):
        pub.send_multipart(frames)
        await wait_until(lambda n=count: feed.malformed_messages == n, what=f"{what} counted")
    assert feed.received_ticks == received  # none of them taken as a tick
    pub.send_multipart(make_tick(host="alpha", seq=7, ts=time.time()).to_frames())
    body = await receive_json(ws)
    while body["tick"]["host"] == "probe":  # probes still in flight from feed_connected()
        body = await receive_json(ws)
    assert (body["type"], body["tick"]["host"], body["tick"]["seq"]) == ("tick", "alpha", 7)
    health = await (await live_client.get("/healthz")).json()
    assert health["malformed_messages"] == len(malformed_messages())
    assert health["internal_errors"] == 0
    await ws.close()


async def test_a_frame_over_maxmsgsize_is_counted_and_the_feed_reconnects(live_client, publisher):
    """libzmq drops the connection on a frame over ZMQ_MAXMSGSIZE and never retries it: without
    the feed's reconnection, one such message would end the live view until a restart."""
    pub = publisher[0]
    feed = live_client.app[FEED]
    ws = await live_client.ws_connect("/ws")
    assert (await receive_json(ws))["type"] == "snapshot"
    pub.send_multipart([TOPIC, b"1", b"x" * (MAX_MESSAGE_BYTES + 1)])
    await wait_until(lambda: feed.malformed_messages == 1, what="the oversized frame counted")
    assert feed.restored_connections == 1
    await feed_connected(live_client.app, pub)  # ticks flow again
    pub.send_multipart(make_tick(host="alpha", seq=9, ts=time.time()).to_frames())
    assert (await receive_tick(ws, "alpha"))["tick"]["seq"] == 9
    health = await (await live_client.get("/healthz")).json()
    assert health["malformed_messages"] == 1
    await ws.close()


async def test_a_sampler_restart_is_not_counted_as_malformed(aiohttp_client, db_path):
    """A sampler that stops and comes back: libzmq retries by itself, the feed leaves it be."""
    context = zmq.Context()
    pub = context.socket(zmq.PUB)
    pub.setsockopt(zmq.LINGER, 0)
    port = pub.bind_to_random_port("tcp://127.0.0.1")
    endpoint = f"tcp://127.0.0.1:{port}"
    try:
        client = await aiohttp_client(create_app(make_config(db_path, PCW_SUBSCRIBE=endpoint)))
        feed = client.app[FEED]
        await feed_connected(client.app, pub)
        pub.close(linger=0)
        pub = context.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        for _attempt in range(100):  # the port is free again once the old socket is gone
            try:
                pub.bind(endpoint)
                break
            except zmq.ZMQError:
                await asyncio.sleep(0.05)
        await feed_connected(client.app, pub)
        # A wrong reconnection would come RESTORE_AFTER_S after the disconnect. A tick received
        # after that moment proves that the feed's loop ran past it, however slow the machine.
        await asyncio.sleep(RESTORE_AFTER_S + 0.5)
        await feed_connected(client.app, pub)  # sent and received after the window
        assert feed.malformed_messages == 0
        assert feed.restored_connections == 0
    finally:
        pub.close(linger=0)
        context.term()


async def test_shutdown_tells_websockets_going_away(aiohttp_client, live_config):
    client = await aiohttp_client(create_app(live_config))
    ws = await client.ws_connect("/ws")
    assert (await receive_json(ws))["type"] == "snapshot"
    await client.app.shutdown()
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.GOING_AWAY


async def test_client_messages_are_ignored_and_size_capped(live_client):
    ws = await live_client.ws_connect("/ws")
    assert (await receive_json(ws))["type"] == "snapshot"
    await ws.send_str("hello")
    await ws.send_str("x" * 10_000)
    message = await ws.receive(timeout=5)
    assert message.type == aiohttp.WSMsgType.CLOSE
    assert message.data == aiohttp.WSCloseCode.MESSAGE_TOO_BIG
    assert live_client.app[COUNTERS].internal_errors == 0


def fresh_status(now: float, **changes) -> WriterStatus:
    return WriterStatus(**{"state": "ok", "updated_ts": now, "started_ts": now - 60, **changes})


async def test_healthz_is_503_without_writer_status_or_with_an_old_tick(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    response = await client.get("/healthz")
    assert response.status == 503
    body = await response.json()
    assert body["status"] == "down"  # the fixture's newest reading is from 2023
    assert body["last_tick_source"] == "db"
    assert body["last_tick_age_s"] > 3600
    assert body["writer"]["state"] is None
    assert body["db_bytes"] > 0
    assert any("writer" in p for p in body["problems"])
    assert any("old" in p for p in body["problems"])


async def test_healthz_is_200_when_fresh_and_503_when_the_writer_is_not(aiohttp_client, tmp_path):
    db_path = tmp_path / "fresh.db"
    now = time.time()
    conn = create_db(db_path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, now - 600, now - 5)
    conn.close()
    write_status(db_path, fresh_status(now))
    client = await aiohttp_client(create_app(make_config(db_path)))
    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ok"
    assert body["problems"] == []
    assert 4 < body["last_tick_age_s"] < 60
    assert body["writer"]["state"] == "ok"
    wal = db_path.with_name(db_path.name + "-wal")
    wal_bytes = wal.stat().st_size if wal.exists() else 0
    assert body["db_bytes"] == db_path.stat().st_size + wal_bytes

    write_status(db_path, fresh_status(now, state="degraded", last_error="disk full"))
    body = await (await client.get("/healthz")).json()
    assert body["status"] == "degraded"
    assert any("disk full" in p for p in body["problems"])

    write_status(db_path, fresh_status(now - 3600))
    response = await client.get("/healthz")
    assert response.status == 503
    assert any("status is" in p for p in (await response.json())["problems"])


async def test_healthz_counts_the_live_feed_first(live_client, publisher, db_path):
    write_status(db_path, fresh_status(time.time()))
    publisher[0].send_multipart(make_tick(host="alpha", seq=1, ts=time.time()).to_frames())
    await wait_until(lambda: "alpha" in {t.host for t in live_client.app[FEED].latest_ticks()})
    response = await live_client.get("/healthz")
    body = await response.json()
    assert response.status == 200, body
    assert body["last_tick_source"] == "live"
    assert body["last_tick_age_s"] < 5


async def test_a_websocket_tick_sends_its_gpus_as_the_api_lists_them(live_client, publisher):
    pub = publisher[0]
    ws = await live_client.ws_connect("/ws")
    assert (await receive_json(ws))["type"] == "snapshot"
    tick = make_tick(host="alpha", seq=3, ts=time.time(), util_gpu_pct=41, gpu_count=2)
    pub.send_multipart(tick.to_frames())
    sent = (await receive_tick(ws, "alpha"))["tick"]["gpus"]
    listed = (await (await live_client.get("/api/v1/gpus")).json())["gpus"]
    by_uuid = {gpu["gpu_uuid"]: gpu for gpu in listed}
    assert [gpu["gpu_uuid"] for gpu in sent] == [reading.uuid for reading in tick.gpus]
    for gpu in sent:
        api = by_uuid[gpu["gpu_uuid"]]
        assert list(gpu) == list(api)
        same = ("host", "gpu_index", "gpu_name", "latest", "stale", "host_stale", "mig_devices")
        assert {key: gpu[key] for key in same} == {key: api[key] for key in same}
        assert gpu["latest"]["util_gpu_pct"] == 41
    await ws.close()
