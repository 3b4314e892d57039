"""Hosts of a hub: the staleness rule, GET /api/v1/hosts, and history filtered by host."""

from __future__ import annotations

import json
import time

import msgspec
import pytest

from common.messages import Tick
from common.staleness import stale_after_s
from services.web.app import create_app
from services.web.feed import LiveFeed
from services.web.fleet import Live, build_fleet, host_states
from services.web.keys import FEED
from services.web.rows import GpuLatest, GpuRow
from services.web.stale_watch import MAX_WAIT_S, PAST_DUE_S, StaleWatch
from tests.web.conftest import (
    T0,
    UUID_A,
    UUID_B,
    UUID_C,
    create_db,
    feed_connected,
    host_tick,
    make_config,
    make_tick,
    wait_until,
)
from tests.web.test_metrics import samples

# -- host states (the rule itself: tests/test_staleness.py) ---------------------------------


_NO_LIVE = Live([], {}, lambda _uuid: None)


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
        msgspec.structs.replace(make_tick("b", ts=now_s - 14, gpu_count=2), interval_s=1.0),
    ]
    states = host_states(stored, ticks, now_s, default_interval_s=100.0)

    assert list(states) == ["a", "b", "c"]
    a, b, c = states["a"], states["b"], states["c"]
    assert (a.last_seen_ts, a.interval_s, a.stale) == (now_s - 5, 60.0, False)
    # the live tick's GPUs and the file's, each once: GPU-b0, UUID_A, GPU-live-b-1
    assert msgspec.to_builtins(b.public()) == {
        "host": "b",
        "last_seen_ts": now_s - 14,
        "stale": True,  # 14 s > 3 x 1 s + 10 s
        "stale_since_ts": now_s - 1,
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


def _staleness(fleet_gpus) -> dict[str, dict]:
    """Return {gpu uuid: its host and staleness fields} of build_fleet()'s GPUs."""
    names = (
        "host",
        "last_ts",
        "interval_s",
        "stale",
        "stale_since_ts",
        "host_stale",
        "host_last_seen_ts",
    )
    return {gpu.gpu_uuid: {name: getattr(gpu, name) for name in names} for gpu in fleet_gpus}


def test_every_gpu_of_a_stale_host_is_kept_with_its_last_seen_time():
    now_s = 10_000.0
    fleet = build_fleet([_row("GPU-x", "x", now_s - 1000, 60.0)], _NO_LIVE, now_s, 60.0)
    assert _staleness(fleet.gpus) == {
        "GPU-x": {
            "host": "x",
            "last_ts": now_s - 1000,
            "interval_s": 60.0,
            "stale": True,
            "stale_since_ts": now_s - 1000 + 190,
            "host_stale": True,
            "host_last_seen_ts": now_s - 1000,
        }
    }


def test_a_gpu_missing_from_its_hosts_ticks_goes_stale_by_the_hosts_own_clock():
    now_s = 10_000.0
    # a ticks now at 1 s; GPU-a1 left its ticks 13 s (its stale limit) and 14 s ago by a's times
    live = msgspec.structs.replace(make_tick("a", ts=now_s, gpu_count=1), interval_s=1.0)
    stored = [_row("GPU-a1", "a", now_s - 13, 60.0), _row("GPU-a2", "a", now_s - 14, 60.0)]
    fleet = build_fleet(stored, Live([live], {"a": now_s}, lambda _uuid: None), now_s, 60.0)
    gpus = _staleness(fleet.gpus)
    assert [
        (gpus[uuid]["stale"], gpus[uuid]["stale_since_ts"], gpus[uuid]["host_stale"])
        for uuid in (UUID_A, "GPU-a1", "GPU-a2")
    ] == [
        (False, None, False),
        (False, None, False),
        (True, now_s - 1, False),
    ]
    assert {g["interval_s"] for g in gpus.values()} == {1.0}


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
                "stale_since_ts": T0 + 300 + stale_after_s(10.0),
                "interval_s": 10.0,
                "gpu_count": 2,
            },
            {
                "host": "beta",
                "last_seen_ts": T0 - 90_000,
                "stale": True,
                "stale_since_ts": T0 - 90_000 + stale_after_s(10.0),
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
    assert all(s["count"] and set(s["count"]) == {0} for s in series)


# -- one rule, one moment: the API, /healthz, /metrics and the websocket agree ------------------

FAST_S, SLOW_S = 1.0, 5.0  # two hosts' own intervals: stale after 13 s and after 25 s


def interval_tick(host: str, ts: float, interval_s: float, seq: int = 0) -> Tick:
    """Return a tick of one GPU of `host` at ts, sampled every interval_s."""
    tick = host_tick(ts, {f"GPU-{host}-0": None}, host=host, seq=seq)
    return msgspec.structs.replace(tick, interval_s=interval_s)


async def judged(client) -> tuple[dict[str, tuple[bool, bool, bool, bool]], str]:
    """Return {host: (API host stale, API GPU stale, /healthz lists it, /metrics leaves its
    GPUs out)} and the /healthz status, all judged at the app's clock."""
    hosts = (await (await client.get("/api/v1/hosts")).json())["hosts"]
    gpus = (await (await client.get("/api/v1/gpus")).json())["gpus"]
    health = await (await client.get("/healthz")).json()
    text = await (await client.get("/metrics")).text()
    sending = {s.labels["Hostname"] for s in samples(text, "DCGM_FI_DEV_GPU_UTIL")}
    gpu_stale = {gpu["host"]: gpu["stale"] for gpu in gpus}
    listed = {entry["host"] for entry in health["stale_hosts"]}
    return {
        entry["host"]: (
            entry["stale"],
            gpu_stale[entry["host"]],
            entry["host"] in listed,
            entry["host"] not in sending,
        )
        for entry in hosts
    }, health["status"]


async def next_message(ws, kind: str) -> dict:
    """Return the next websocket message of type `kind`, skipping others (5 s at most)."""
    while True:
        message = await ws.receive_json(timeout=5)
        if message["type"] == kind:
            return message


async def test_every_answer_calls_a_host_stale_from_the_same_moment_by_its_own_interval(
    aiohttp_client, tmp_path
):
    path = tmp_path / "empty.db"
    create_db(path).close()
    t0 = time.time()
    clock = [t0]
    # The web's own interval (60 s) judges nothing: each host goes by its own.
    config = make_config(path, PCW_INTERVAL_S="60")
    client = await aiohttp_client(create_app(config, clock=lambda: clock[0]))
    feed = client.app[FEED]
    feed.handle(interval_tick("fast", t0, FAST_S).to_frames())
    feed.handle(interval_tick("slow", t0, SLOW_S).to_frames())
    ws = await client.ws_connect("/ws")
    snapshot = await next_message(ws, "snapshot")
    assert [(h["host"], h["stale"], h["interval_s"]) for h in snapshot["hosts"]] == [
        ("fast", False, FAST_S),
        ("slow", False, SLOW_S),
    ]
    fresh, stale = (False,) * 4, (True,) * 4

    for age_s in (0.0, 12.0, stale_after_s(FAST_S)):  # up to fast's bound itself: fresh
        clock[0] = t0 + age_s
        assert await judged(client) == ({"fast": fresh, "slow": fresh}, "degraded")

    clock[0] = t0 + stale_after_s(FAST_S) + 0.001
    assert await judged(client) == ({"fast": stale, "slow": fresh}, "degraded")
    told = await next_message(ws, "hosts")  # the page hears it without asking
    assert [(h["host"], h["stale"], h["stale_since_ts"]) for h in told["hosts"]] == [
        ("fast", True, t0 + stale_after_s(FAST_S))
    ]
    by_host = await (await client.get("/metrics", params={"host": "fast"})).text()
    assert samples(by_host, "DCGM_FI_DEV_GPU_UTIL") == []

    clock[0] = t0 + stale_after_s(SLOW_S) + 0.001
    assert await judged(client) == ({"fast": stale, "slow": stale}, "down")
    told = await next_message(ws, "hosts")
    assert [(h["host"], h["stale"]) for h in told["hosts"]] == [("slow", True)]

    # fast ticks again: fresh in every answer, and its tick's message says so
    feed.handle(interval_tick("fast", clock[0], FAST_S, seq=1).to_frames())
    message = await next_message(ws, "tick")
    assert (message["tick"]["host"], message["host_state"]["stale"]) == ("fast", False)
    assert message["tick"]["interval_s"] == FAST_S
    assert await judged(client) == ({"fast": fresh, "slow": stale}, "degraded")
    await ws.close()


def test_the_watch_tells_once_the_moment_a_live_host_goes_stale_and_again_after_a_new_tick():
    t0 = 10_000.0
    clock = [t0]
    sent: list[dict] = []
    feed = LiveFeed(on_message=lambda _message: None, clock=lambda: clock[0])
    watch = StaleWatch(feed, lambda text: sent.append(json.loads(text)), clock=lambda: clock[0])
    feed.handle(interval_tick("fast", t0, FAST_S).to_frames())

    assert watch.step() == MAX_WAIT_S  # due in 13 s: look again within a second
    clock[0] = t0 + stale_after_s(FAST_S) - 0.5
    assert watch.step() == pytest.approx(0.5 + PAST_DUE_S)  # wakes just past the due moment
    clock[0] = t0 + stale_after_s(FAST_S)
    watch.step()
    assert sent == []  # at the bound itself the host is not stale yet
    clock[0] += PAST_DUE_S
    watch.step()
    watch.step()
    assert [(h["host"], h["stale"], h["stale_since_ts"]) for m in sent for h in m["hosts"]] == [
        ("fast", True, t0 + stale_after_s(FAST_S))
    ]
    assert sent[0]["type"] == "hosts"

    feed.handle(interval_tick("fast", clock[0], FAST_S, seq=1).to_frames())
    watch.step()
    clock[0] += stale_after_s(FAST_S) + PAST_DUE_S
    watch.step()
    assert [h["stale"] for m in sent for h in m["hosts"]] == [True, True]
