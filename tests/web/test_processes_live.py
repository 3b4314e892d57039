"""Processes, MIG devices and the idle flag from a live tick newer than the file (real ZeroMQ).

The file holds what the writer stored (ticks 0-4 of host alpha, interval 60 s); the live feed
then brings tick 5 before the writer's next flush, and /api/v1/gpus and /api/v1/processes must
answer for it.
"""

from __future__ import annotations

import pytest

from common.messages import GpuProcess, GpuReading, MigDevice, Tick
from services.web.app import create_app
from services.web.keys import FEED
from services.writer.store import Store
from tests.web.conftest import feed_connected, make_config, wait_until

T0 = 1_700_000_040.0
GIB = 1 << 30
IDLE_AFTER_S = 300.0


def at(k: float) -> float:
    return T0 + 60 * k


def notebook(pid: int = 3, mem_gib: float = 4) -> GpuProcess:
    return GpuProcess(
        pid=pid,
        used_mem_bytes=int(mem_gib * GIB),
        visible=True,
        name="python",
        cmdline="python -m ipykernel_launcher",
        user="bob",
    )


HIDDEN = GpuProcess(pid=77, used_mem_bytes=GIB)  # a PID of another namespace
MIG = [
    MigDevice(
        index=0, uuid="MIG-0", name="H100 MIG 1g.10gb", mem_used_bytes=GIB, mem_total_bytes=10 * GIB
    ),
    MigDevice(
        index=1, uuid="MIG-1", name="H100 MIG 2g.20gb", mem_used_bytes=0, mem_total_bytes=20 * GIB
    ),
]


def tick(k: float, util_pct: int, processes: list[GpuProcess] | None, **more: object) -> Tick:
    reading = GpuReading(
        index=0, uuid="GPU-0", name="H100", util_gpu_pct=util_pct, processes=processes, **more
    )
    return Tick(host="alpha", sampler_id="s", seq=int(k), ts=at(k), interval_s=60.0, gpus=[reading])


@pytest.fixture
async def client(aiohttp_client, tmp_path, publisher):
    """Return a client of an app whose file holds ticks 0-4: idle since tick 0, bob's notebook."""
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(k, 2, [notebook()]) for k in range(5)])  # 240 s: not flagged yet
    store.close()
    config = make_config(
        path,
        PCW_SUBSCRIBE=publisher[1],
        PCW_IDLE_AFTER_S=str(IDLE_AFTER_S),
        PCW_IDLE_UTIL_PCT="5",
    )
    made = await aiohttp_client(create_app(config))
    await feed_connected(made.app, publisher[0])
    return made


async def publish(client, publisher, live: Tick) -> None:
    publisher[0].send_multipart(live.to_frames())
    await wait_until(lambda: live in client.app[FEED].latest_ticks(), what="the live tick")


async def gpu_entry(client) -> dict:
    response = await client.get("/api/v1/gpus")
    assert response.status == 200, await response.text()
    [entry] = [g for g in (await response.json())["gpus"] if g["gpu_uuid"] == "GPU-0"]
    return entry


async def processes(client, query: str = "") -> dict:
    response = await client.get(f"/api/v1/processes?gpu=GPU-0{query}")
    assert response.status == 200, await response.text()
    return await response.json()


async def test_the_file_alone_does_not_flag_the_gpu_yet(client):
    entry = await gpu_entry(client)
    assert entry["idle"] is None
    assert [p["pid"] for p in entry["processes"]] == [3]
    assert entry["mig_devices"] == []


async def test_a_live_idle_tick_flags_the_gpu_since_the_files_first_idle_tick(client, publisher):
    await publish(client, publisher, tick(5, 1, [notebook(), HIDDEN], mig_devices=MIG))
    entry = await gpu_entry(client)
    assert entry["latest"]["ts"] == at(5)
    listed = {p["pid"]: p for p in entry["processes"]}
    assert set(listed) == {3, 77}
    assert listed[3]["since_ts"] == at(0)  # present without a break since the file's tick 0
    assert listed[77]["since_ts"] == at(5)  # new on the live tick
    assert listed[77]["visible"] is False and listed[77]["user"] is None
    assert entry["idle"]["since_ts"] == at(0)  # 300 s on the live tick: flagged
    assert {p["pid"] for p in entry["idle"]["processes"]} == {3, 77}
    assert [(m["uuid"], m["mem_total_bytes"], m["util_gpu_pct"]) for m in entry["mig_devices"]] == [
        ("MIG-0", 10 * GIB, None),
        ("MIG-1", 20 * GIB, None),
    ]


async def test_a_live_busy_tick_clears_the_flag(client, publisher):
    await publish(client, publisher, tick(6, 90, [notebook()]))  # 360 s after tick 0, but busy
    entry = await gpu_entry(client)
    assert entry["idle"] is None
    assert entry["processes"][0]["since_ts"] == at(0)


async def test_a_live_tick_whose_list_is_unknown_shows_null(client, publisher):
    await publish(client, publisher, tick(5, 1, None))
    entry = await gpu_entry(client)
    assert entry["processes"] is None
    body = await processes(client)
    assert body == {"gpu_uuid": "GPU-0", "ts": at(5), "processes": None}


async def test_processes_answer_from_the_live_tick_when_newer_than_the_file(client, publisher):
    assert (await processes(client))["ts"] == at(4)
    await publish(client, publisher, tick(5, 1, [notebook(mem_gib=6), HIDDEN]))
    body = await processes(client)
    assert body["ts"] == at(5)
    listed = {
        p["pid"]: (p["used_mem_bytes"], p["visible"], p["since_ts"]) for p in body["processes"]
    }
    assert listed == {3: (6 * GIB, True, at(0)), 77: (GIB, False, at(5))}
    # asked for a time before the live tick: the file's tick at or before it
    earlier = await processes(client, f"&at={at(4) + 30}")
    assert earlier["ts"] == at(4)
    assert [p["pid"] for p in earlier["processes"]] == [3]
    # at or after the live tick: the live list
    assert (await processes(client, f"&at={at(5)}"))["ts"] == at(5)


async def test_a_gpu_only_the_live_feed_knows_has_its_processes(client, publisher):
    reading = GpuReading(index=1, uuid="GPU-new", name="L4", processes=[notebook(pid=9)])
    live = Tick(host="alpha", sampler_id="s", seq=5, ts=at(5), interval_s=60.0, gpus=[reading])
    await publish(client, publisher, live)
    response = await client.get("/api/v1/processes?gpu=GPU-new")
    assert response.status == 200
    body = await response.json()
    assert body["ts"] == at(5)
    assert [(p["pid"], p["user"], p["since_ts"]) for p in body["processes"]] == [(9, "bob", at(5))]
