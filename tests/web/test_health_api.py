"""A GPU's health in /api/v1/gpus and over the websocket: values, findings and since when."""

from __future__ import annotations

import time

from common.messages import GpuHealth, GpuLimits, GpuReading, Tick, XidEvent
from services.web.app import create_app
from services.web.keys import FEED
from services.writer.store import Store
from tests.web.conftest import feed_connected, make_config, wait_until
from tests.web.test_live import receive_json, receive_tick

LIMITS = GpuLimits(pcie_max_gen=5, pcie_max_width=16, nvlink_links=18, temp_slowdown_c=89)
HEALTHY = GpuHealth(
    clocks_event_reasons=0,
    remap_pending=False,
    ecc_uncorrected_volatile=0,
    pcie_link_gen=5,
    pcie_link_width=16,
    nvlink_links_active=18,
)
UUID_A = "GPU-health-api-0"  # not the probe ticks' GPU (tests/web/test_live.py)
HOT = GpuHealth(clocks_event_reasons=0x20 | 0x40, pcie_link_gen=5, pcie_link_width=16)


def tick(seq: int, ts: float, health: GpuHealth | None, xids: list[XidEvent] | None = None) -> Tick:
    gpu = GpuReading(
        index=0,
        uuid=UUID_A,
        name="NVIDIA H100 80GB HBM3",
        util_gpu_pct=90,
        health=health,
        limits=LIMITS,
        xid_events=xids or [],
    )
    return Tick(
        host="alpha",
        sampler_id="run",
        seq=seq,
        ts=ts,
        interval_s=1.0,
        driver_version="550.54",
        cuda_version="12.4",
        gpus=[gpu],
    )


async def publish(client, pub, sent: Tick) -> None:
    pub.send_multipart(sent.to_frames())
    feed = client.app[FEED]
    await wait_until(
        lambda: any(t.host == "alpha" and t.seq == sent.seq for t in feed.latest_ticks()),
        what=f"tick {sent.seq}",
    )


async def gpu_entry(client) -> dict:
    response = await client.get("/api/v1/gpus")
    assert response.status == 200
    [gpu] = [g for g in (await response.json())["gpus"] if g["gpu_uuid"] == UUID_A]
    return gpu


async def test_a_healthy_gpu_has_its_values_limits_and_no_finding(live_client, publisher):
    now = time.time()
    await publish(live_client, publisher[0], tick(1, now, HEALTHY))

    gpu = await gpu_entry(live_client)

    assert gpu["findings"] == [] and gpu["last_xid"] is None
    assert gpu["health"]["pcie_link_width"] == 16 and gpu["health"]["nvlink_links_active"] == 18
    assert gpu["health"]["clock_event_flags"]["hw_thermal"] is False
    assert gpu["health"]["mem_temp_c"] is None  # not read: null, never 0
    assert gpu["limits"]["pcie_max_gen"] == 5 and gpu["limits"]["temp_slowdown_c"] == 89
    assert gpu["cuda_version"] == "12.4"


async def test_a_finding_holds_since_the_first_tick_that_showed_it(live_client, publisher):
    now = time.time()
    pub = publisher[0]
    await publish(live_client, pub, tick(1, now - 3, HEALTHY))
    await publish(live_client, pub, tick(2, now - 2, HOT))
    await publish(live_client, pub, tick(3, now - 1, HOT))

    gpu = await gpu_entry(live_client)

    assert gpu["findings"] == [
        {"kind": "throttled", "text": "throttled: SW thermal, HW thermal", "since_ts": now - 2}
    ]
    assert gpu["health"]["clock_event_flags"]["hw_thermal"] is True

    await publish(live_client, pub, tick(4, now, HEALTHY))
    assert (await gpu_entry(live_client))["findings"] == []
    await publish(live_client, pub, tick(5, now + 1, HOT))
    [again] = (await gpu_entry(live_client))["findings"]
    assert again["since_ts"] == now + 1  # a new run, not the old one


async def test_an_xid_is_the_last_xid_and_a_finding_dated_when_read(live_client, publisher):
    now = time.time()
    pub = publisher[0]
    xid = XidEvent(ts=now - 5, code=79)
    await publish(live_client, pub, tick(1, now - 4, HEALTHY, [xid]))
    await publish(live_client, pub, tick(2, now - 3, HEALTHY))  # the XID is not sent again

    gpu = await gpu_entry(live_client)

    assert gpu["last_xid"] == {"ts": now - 5, "code": 79, "text": "XID 79 (GPU fell off the bus)"}
    assert gpu["findings"] == [
        {"kind": "xid", "text": "XID 79 (GPU fell off the bus)", "since_ts": now - 5}
    ]


async def test_the_websocket_carries_the_same_findings(live_client, publisher):
    now = time.time()
    pub = publisher[0]
    ws = await live_client.ws_connect("/ws")
    await receive_json(ws)  # the snapshot

    pub.send_multipart(tick(7, now, HOT).to_frames())
    message = await receive_tick(ws, "alpha")

    [gpu] = message["tick"]["gpus"]
    assert [f["kind"] for f in gpu["findings"]] == ["throttled"]
    assert gpu["health"]["clocks_event_reasons"] == 0x60
    assert message["tick"]["cuda_version"] == "12.4"
    await ws.close()


async def test_a_gpu_from_an_older_sampler_has_no_health_and_no_claim(live_client, publisher):
    await publish(live_client, publisher[0], tick(1, time.time(), None))

    gpu = await gpu_entry(live_client)

    assert gpu["health"] is None and gpu["findings"] == []


async def test_an_xid_stored_before_the_web_started_is_shown_live_too(
    aiohttp_client, live_config, db_path, publisher
):
    now = time.time()
    store = Store(db_path)  # the writer stored it while no web process ran
    store.write([tick(1, now - 60, HEALTHY, [XidEvent(ts=now - 61, code=48)])])
    store.close()
    client = await aiohttp_client(create_app(live_config))
    await feed_connected(client.app, publisher[0])
    await publish(client, publisher[0], tick(2, now, HEALTHY))  # live, no XID in it

    gpu = await gpu_entry(client)
    xid = {"ts": now - 61, "code": 48, "text": "XID 48 (double-bit ECC error)"}
    assert gpu["last_xid"] == xid
    assert gpu["findings"][0] == {"kind": "xid", "text": xid["text"], "since_ts": now - 61}

    ws = await client.ws_connect("/ws")  # the live feed's own answers know it from then on
    await receive_json(ws)
    publisher[0].send_multipart(tick(3, now + 1, HEALTHY).to_frames())
    message = await receive_tick(ws, "alpha")
    [live] = message["tick"]["gpus"]
    assert live["last_xid"] == xid and live["findings"][0]["kind"] == "xid"
    await ws.close()
    # /metrics' XID is the one this process saw itself, as dcgm-exporter's: none here
    metrics = await (await client.get("/metrics")).text()
    assert not [
        line for line in metrics.splitlines()
        if line.startswith("DCGM_FI_DEV_XID_ERRORS{") and UUID_A in line
    ]  # fmt: skip


async def test_a_gpu_only_the_file_knows_keeps_its_limits_and_cuda_version(aiohttp_client, db_path):
    store = Store(db_path)  # its host stopped before this web process started
    store.write([tick(1, time.time() - 600, HEALTHY)])
    store.close()
    client = await aiohttp_client(create_app(make_config(db_path)))

    gpu = await gpu_entry(client)

    assert gpu["limits"]["pcie_max_gen"] == 5 and gpu["limits"]["temp_slowdown_c"] == 89
    assert gpu["limits"]["max_sm_clock_mhz"] is None  # not told: null, as live
    assert gpu["cuda_version"] == "12.4"
    assert gpu["health"] is None and gpu["findings"] == []  # health is the live feed's alone
