"""Hosts of a hub: the staleness rule, GET /api/v1/hosts, and history filtered by host."""

from __future__ import annotations

import time

import msgspec
import pytest

from services.web.app import create_app
from services.web.feed import LiveFeed
from services.web.hosts import host_states, is_stale, mark_gpus, stale_after_s
from services.web.keys import FEED
from services.web.store import GpuLatest, GpuRow
from tests.web.conftest import (
    T0,
    UUID_A,
    UUID_B,
    UUID_C,
    host_tick,
    make_config,
    make_tick,
    wait_until,
)
from tests.web.test_live import feed_connected

# -- the rule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval_s", "bound_s"),
    [(60.0, 180.0), (10.0, 30.0), (5.0, 15.0), (1.0, 11.0), (0.5, 10.5), (3600.0, 10800.0)],
)
def test_a_host_is_stale_after_three_intervals_and_never_within_ten_seconds(interval_s, bound_s):
    assert stale_after_s(interval_s) == bound_s
    assert not is_stale(1000.0, interval_s, now_s=1000.0 + bound_s)
    assert is_stale(1000.0, interval_s, now_s=1000.0 + bound_s + 0.001)


def test_a_host_never_seen_is_stale():
    assert is_stale(None, 60.0, now_s=0.0)


def _row(uuid: str, host: str, last_ts: float, interval_s: float | None) -> GpuLatest:
    gpu = GpuRow(
        1, uuid, host, 0, "NVIDIA Test GPU", None, None, last_ts - 100, last_ts, interval_s
    )
    return GpuLatest(gpu, None)


def test_host_states_take_the_newest_of_file_and_live_feed_and_its_interval():
    now_s = 10_000.0
    stored = [
        _row("GPU-a0", "a", now_s - 100, 60.0),  # a: the file is newer than a's live tick
        _row("GPU-a1", "a", now_s - 5, 60.0),
        _row("GPU-b0", "b", now_s - 40, 10.0),  # b: the live tick is newer, at interval 1 s
        _row("GPU-c0", "c", now_s - 500, None),  # c: an old file without intervals
    ]
    ticks = [
        make_tick("a", ts=now_s - 50),
        msgspec.structs.replace(make_tick("b", ts=now_s - 12, gpu_count=2), interval_s=1.0),
    ]
    states = host_states(stored, ticks, now_s, default_interval_s=100.0)

    assert list(states) == ["a", "b", "c"]
    a, b, c = states["a"], states["b"], states["c"]
    assert (a.last_seen_ts, a.interval_s, a.stale) == (now_s - 5, 60.0, False)
    # the live tick's GPUs and the file's, each once: GPU-b0, UUID_A, GPU-live-b-1
    assert b.to_json() == {
        "host": "b",
        "last_seen_ts": now_s - 12,
        "stale": True,  # 12 s > max(3 x 1 s, 1 s + 10 s)
        "interval_s": 1.0,
        "gpu_count": 3,
    }
    assert (c.last_seen_ts, c.interval_s, c.stale) == (now_s - 500, 100.0, True)


def test_a_live_host_is_judged_by_when_its_tick_arrived_not_by_its_own_clock():
    now_s = 10_000.0
    behind = make_tick("slow-clock", ts=now_s - 3600)  # its clock is an hour behind
    quiet = make_tick("quiet", ts=now_s - 3600)  # its clock is right: it stopped an hour ago
    arrived = {"slow-clock": now_s - 1.0, "quiet": now_s - 3600}

    states = host_states([], [behind, quiet], now_s, 60.0, received_s=arrived)

    assert states["slow-clock"].stale is False
    assert states["slow-clock"].last_seen_ts == now_s - 3600  # shown as the host stated it
    assert states["quiet"].stale is True


def test_a_hosts_newer_tick_replaces_its_live_one_even_when_its_clock_stepped_back():
    clock = [100.0]
    feed = LiveFeed(on_message=lambda _message: None, clock=lambda: clock[0])
    feed.handle(make_tick("a", seq=5, ts=T0 + 400).to_frames())
    clock[0] = 160.0
    feed.handle(make_tick("a", seq=6, ts=T0 + 340).to_frames())  # NTP stepped its clock back

    assert [(tick.seq, tick.ts) for tick in feed.latest_ticks()] == [(6, T0 + 340)]
    assert feed.received_s() == {"a": 160.0}
    feed.handle(make_tick("a", seq=4, ts=T0 + 500).to_frames())  # an older tick of the run
    assert feed.latest_ticks()[0].seq == 6


def test_mark_gpus_keeps_every_gpu_of_a_stale_host_with_its_last_seen_time():
    now_s = 10_000.0
    states = host_states([_row("GPU-x", "x", now_s - 1000, 60.0)], [], now_s, 60.0)
    gpus = [{"host": "x", "gpu_uuid": "GPU-x"}, {"host": "unknown", "gpu_uuid": "GPU-y"}]
    mark_gpus(gpus, states)
    assert gpus[0] == {
        "host": "x",
        "gpu_uuid": "GPU-x",
        "host_stale": True,
        "host_last_seen_ts": now_s - 1000,
    }
    assert (gpus[1]["host_stale"], gpus[1]["host_last_seen_ts"]) == (True, None)


# -- the API, on the fixture file (alpha: UUID_A, UUID_B; beta: UUID_C; all long ago) ---------


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


async def test_hosts_lists_each_host_of_the_file_stale_with_its_last_seen_time(client):
    response = await client.get("/api/v1/hosts")
    assert response.status == 200
    assert await response.json() == {
        "hosts": [
            {
                "host": "alpha",
                "last_seen_ts": T0 + 300,
                "stale": True,
                "interval_s": 10.0,
                "gpu_count": 2,
            },
            {
                "host": "beta",
                "last_seen_ts": T0 - 90_000,
                "stale": True,
                "interval_s": 10.0,
                "gpu_count": 1,
            },
        ]
    }


async def test_gpus_of_stale_hosts_are_still_listed_and_say_so(client):
    gpus = (await (await client.get("/api/v1/gpus")).json())["gpus"]
    assert [(g["gpu_uuid"], g["host_stale"], g["host_last_seen_ts"]) for g in gpus] == [
        (UUID_A, True, T0 + 300),
        (UUID_B, True, T0 + 300),
        (UUID_C, True, T0 - 90_000),
    ]


async def _series(client, **params: object) -> tuple[int, dict]:
    query = [("from", str(T0 - 100_000)), ("to", str(T0 + 400))]
    for name, values in params.items():
        query += [(name, value) for value in values]
    response = await client.get("/api/v1/history", params=query)
    return response.status, await response.json()


async def test_history_of_one_host_has_only_its_gpus(client):
    status, body = await _series(client, host=["alpha"])
    assert status == 200
    assert [(s["host"], s["gpu_uuid"]) for s in body["series"]] == [
        ("alpha", UUID_A),
        ("alpha", UUID_B),
    ]
    status, body = await _series(client, host=["beta", "alpha", "beta"])
    assert [s["gpu_uuid"] for s in body["series"]] == [UUID_A, UUID_B, UUID_C]


async def test_history_with_gpu_and_host_gives_the_named_gpus_of_those_hosts(client):
    status, body = await _series(client, gpu=[UUID_A, UUID_C], host=["beta"])
    assert status == 200
    assert [s["gpu_uuid"] for s in body["series"]] == [UUID_C]


async def test_history_of_an_unknown_host_is_404(client):
    status, body = await _series(client, host=["alpha", "gamma"])
    assert (status, body) == (404, {"error": "host='gamma' is not a known host"})


@pytest.mark.parametrize("bad", ["", "a\nb", "x" * 254])
async def test_history_of_a_bad_host_name_is_400(client, bad):
    status, body = await _series(client, host=[bad])
    assert status == 400
    assert body["error"].startswith("host=") and "is not a host name" in body["error"]


# -- the live feed: a host that ticks now is not stale -----------------------------------


async def test_a_host_ticking_now_is_not_stale_and_its_history_is_known(
    aiohttp_client, db_path, publisher
):
    pub, endpoint = publisher
    client = await aiohttp_client(create_app(make_config(db_path, PCW_SUBSCRIBE=endpoint)))
    await feed_connected(client.app, pub)
    feed = client.app[FEED]
    now_s = time.time()
    pub.send_multipart(host_tick(now_s, {"GPU-g0": None, "GPU-g1": None}, "gamma").to_frames())
    await wait_until(lambda: "gamma" in {tick.host for tick in feed.latest_ticks()})

    hosts = {h["host"]: h for h in (await (await client.get("/api/v1/hosts")).json())["hosts"]}
    assert hosts["gamma"]["stale"] is False and hosts["gamma"]["gpu_count"] == 2
    assert hosts["alpha"]["stale"] is True
    gpus = (await (await client.get("/api/v1/gpus")).json())["gpus"]
    assert {g["host"]: g["host_stale"] for g in gpus}["gamma"] is False
    # gamma is only live: a known host, its GPUs listed with no history yet (all gaps)
    response = await client.get(
        "/api/v1/history", params={"host": "gamma", "from": str(now_s - 60), "to": str(now_s + 1)}
    )
    assert response.status == 200
    series = (await response.json())["series"]
    assert [(s["host"], s["gpu_uuid"]) for s in series] == [
        ("gamma", "GPU-g0"),
        ("gamma", "GPU-g1"),
    ]
    assert all(bucket["count"] == 0 for s in series for bucket in s["buckets"])
