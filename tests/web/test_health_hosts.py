"""/healthz lists the hosts gone quiet; its status follows the newest tick of any host."""

from __future__ import annotations

import time

from common.staleness import stale_after_s
from common.status import WriterStatus, write_status
from services.web.app import create_app
from services.web.keys import FEED
from tests.web.conftest import (
    UUID_A,
    UUID_B,
    add_gpu,
    create_db,
    feed_connected,
    host_tick,
    make_config,
    wait_until,
)


def fresh_file(path, now: float) -> None:
    """Write a file where alpha ticked 5 s ago and beta an hour ago (interval 10 s)."""
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, now - 600, now - 5)
    add_gpu(conn, 2, UUID_B, "beta", 0, now - 7200, now - 3600)
    conn.close()
    write_status(path, WriterStatus(state="ok", updated_ts=now, started_ts=now - 60))


async def test_a_quiet_host_is_listed_stale_and_the_status_stays_ok(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    now = time.time()
    fresh_file(path, now)
    client = await aiohttp_client(create_app(make_config(path)))
    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 200, body
    assert body["status"] == "ok" and body["problems"] == []
    assert body["stale_hosts"] == [
        {
            "host": "beta",
            "last_seen_ts": now - 3600,
            "stale_since_ts": now - 3600 + stale_after_s(10.0),
            "interval_s": 10.0,
        }
    ]


async def test_every_host_quiet_is_down_and_all_are_listed(aiohttp_client, config):
    response = await client_get(aiohttp_client, config)  # the fixture's hosts ticked in 2023
    body = await response.json()
    assert response.status == 503 and body["status"] == "down"
    assert [h["host"] for h in body["stale_hosts"]] == ["alpha", "beta"]
    [stopped] = [line for line in body["problems"] if line.startswith("every host is stale")]
    assert "(no tick for 3 of its intervals + 10 s)" in stopped


async def client_get(aiohttp_client, config):
    client = await aiohttp_client(create_app(config))
    return await client.get("/healthz")


async def test_a_live_tick_makes_a_host_fresh_again(aiohttp_client, tmp_path, publisher):
    path = tmp_path / "db"
    now = time.time()
    fresh_file(path, now)
    client = await aiohttp_client(create_app(make_config(path, PCW_SUBSCRIBE=publisher[1])))
    await feed_connected(client.app, publisher[0])
    assert stale_after_s(10.0) < 3600  # beta is stale by the file alone
    live = host_tick(time.time(), {UUID_B: None}, host="beta", seq=1)
    publisher[0].send_multipart(live.to_frames())
    await wait_until(lambda: live in client.app[FEED].latest_ticks())
    body = await (await client.get("/healthz")).json()
    assert body["stale_hosts"] == []  # the probe host's ticks are fresh too
