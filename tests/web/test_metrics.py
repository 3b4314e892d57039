"""GET /metrics: simulated GPUs' ticks over real ZeroMQ into the app, checked by real promtool."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

import msgspec
import pytest
from prometheus_client.parser import text_string_to_metric_families

from common.dbfile import database_bytes
from common.messages import Tick
from common.status import WriterStatus, write_status
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from services.web.app import create_app
from services.web.dcgm_fields import COUNTERS
from services.web.keys import CONFIG, FEED, STORE, WRITER
from services.web.metrics import PipelineCollector, exposition
from tests.web.conftest import make_config, wait_until

MIB = 1 << 20
DCGM_NAMES = (
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_DEV_MEM_COPY_UTIL",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
    "DCGM_FI_DEV_FB_RESERVED",
    "DCGM_FI_DEV_GPU_TEMP",
    "DCGM_FI_DEV_POWER_USAGE",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION",
    "DCGM_FI_DEV_SM_CLOCK",
    "DCGM_FI_DEV_MEM_CLOCK",
    "DCGM_FI_DEV_FAN_SPEED",
)
# Simulated models by index: 0 GeForce RTX 4090 (a fan), 1 H100, 2 A100, 3 L40S (no fan).
GPUS = 4
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
PROMTOOL_LINT_EXIT = 3  # promtool 2.42: 0 clean, 1 unparsable or unreadable, 3 lint findings only
CAMEL_CASE_FINDING = re.compile(
    r"^DCGM_FI_(DEV|PROF)_\w+ label names should be written in 'snake_case' not 'camelCase'$"
)
ENERGY_NAME_FINDING = f'{ENERGY} counter metrics should have "_total" suffix'
# dcgm-exporter's counters keep their exact names: promtool says so of each one sent
COUNTER_NAME_FINDINGS = {
    f'{name} counter metrics should have "_total" suffix' for name in COUNTERS
} | {"DCGM_FI_DEV_PCIE_REPLAY_COUNTER metric name should not include type 'counter'"}


def sim_tick(host: str, seq: int, faults: bool = False) -> Tick:
    """Return a tick read from GPUS simulated GPUs of `host`, as the sampler builds it.

    faults: GPU 0 stops reporting its power draw, GPU 2 is lost.
    """
    nvml = SimulatedNvml(GPUS, host=host)
    reader = GpuReader(nvml)
    reader.start()
    try:
        reader.read()  # identifies every GPU, so that a GPU lost later is a GPU in error
        if faults:
            nvml.fail_metric(0, "nvmlDeviceGetPowerUsage")
            nvml.lose_gpu(2)
        return build_tick(reader.read(), host, f"run-{host}", seq, time.time(), 1.0)
    finally:
        reader.close()


async def publish_until_seen(app, pub, tick: Tick) -> None:
    """Send the tick until the app's live feed holds it (a PUB socket drops until connected)."""
    feed = app[FEED]
    for _ in range(500):
        pub.send_multipart(tick.to_frames())
        await asyncio.sleep(0.01)
        if any(t.host == tick.host and t.seq == tick.seq for t in feed.latest_ticks()):
            return
    raise AssertionError(f"the live feed never received the tick of {tick.host}")


@pytest.fixture
async def client(aiohttp_client, db_path, publisher):
    return await aiohttp_client(create_app(make_config(db_path, PCW_SUBSCRIBE=publisher[1])))


async def scrape(client) -> str:
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    return await response.text()


def samples(text: str, name: str) -> list:
    """Return the samples named `name` (a counter's with its _total) in the exposition.

    prometheus_client's parser names every counter sample NAME_total, dcgm-exporter's counters'
    too, although their lines say DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION and so on
    (test_energy_is_a_counter...).
    """
    parsed_name = f"{name}_total" if name in COUNTERS else name
    return [
        sample
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == parsed_name
    ]


def dcgm_by_uuid(text: str, name: str) -> dict[str, float]:
    return {sample.labels["UUID"]: sample.value for sample in samples(text, name)}


def promtool(text: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["promtool", "check", "metrics"],
        input=text,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


# -- promtool ------------------------------------------------------------------------------------


async def test_metrics_pass_promtool_with_only_dcgm_label_case_findings(client, publisher):
    write_status(client.app[CONFIG].db_path, writer_status())
    await publish_until_seen(client.app, publisher[0], sim_tick("node-a", 5))
    await publish_until_seen(client.app, publisher[0], sim_tick("node-b", 9, faults=True))
    text = await scrape(client)
    assert "DCGM_FI_DEV_GPU_UTIL{" in text and "pycudawatch_ticks_published_total{" in text

    result = promtool(text)

    # promtool 2.42 has no switch for its lint: it exits 3 when the exposition parses but has
    # lint findings, 1 when it does not parse. It finds two things, both dcgm-exporter's own
    # naming, which the dashboards and rules written for it query, so they stay: its label names
    # (modelName, Hostname, UUID) are camelCase, reported on every DCGM family; its counters
    # (energy, PCIe, ECC, ...) have no "_total" suffix, and one is named ..._COUNTER. So a pass
    # is: it parses, and every finding is one of those; nothing at all on our own pycudawatch_*
    # metrics.
    assert result.returncode in (0, PROMTOOL_LINT_EXIT), result.stderr
    findings = result.stderr.splitlines()
    assert ENERGY_NAME_FINDING in findings
    unexpected = [line for line in findings if not CAMEL_CASE_FINDING.match(line)]
    assert ENERGY_NAME_FINDING in unexpected
    assert set(unexpected) <= COUNTER_NAME_FINDINGS
    assert not any("pycudawatch" in line for line in findings)


def test_promtool_fails_an_exposition_that_does_not_parse():
    # The check above can fail: promtool exits 1 on text Prometheus could not scrape.
    result = promtool("# TYPE DCGM_FI_DEV_GPU_UTIL gauge\nDCGM_FI_DEV_GPU_UTIL{gpu=0} 1\n")
    assert result.returncode == 1


# -- names, labels, values -----------------------------------------------------------------------


async def test_every_simulated_gpu_has_each_dcgm_metric_with_dcgm_labels(client, publisher):
    tick = sim_tick("node-a", 5)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    for name in DCGM_NAMES:
        assert f"# TYPE {name} " in text
    for gpu in tick.gpus:
        expected_labels = {
            "gpu": str(gpu.index),
            "UUID": gpu.uuid,
            "pci_bus_id": gpu.pci_bus_id,
            "device": f"nvidia{gpu.index}",
            "modelName": gpu.name,
            "Hostname": "node-a",
            "hostname": "node-a",
            "DCGM_FI_DRIVER_VERSION": tick.driver_version,
        }
        names = DCGM_NAMES if gpu.fan_pct is not None else DCGM_NAMES[:-1]
        for name in names:
            [sample] = [s for s in samples(text, name) if s.labels["UUID"] == gpu.uuid]
            assert sample.labels == expected_labels, name
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_GPU_UTIL")[gpu.uuid] == gpu.util_gpu_pct
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_MEM_COPY_UTIL")[gpu.uuid] == gpu.util_mem_pct
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_FB_USED")[gpu.uuid] == gpu.mem_used_bytes // MIB
        free_mib = gpu.mem_free_bytes // MIB
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_FB_FREE")[gpu.uuid] == free_mib
        reserved_mib = gpu.mem_reserved_bytes // MIB
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_FB_RESERVED")[gpu.uuid] == reserved_mib
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_GPU_TEMP")[gpu.uuid] == gpu.temp_c
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_POWER_USAGE")[gpu.uuid] == gpu.power_w
        energy_mj = dcgm_by_uuid(text, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")[gpu.uuid]
        assert energy_mj == round(gpu.energy_j * 1000)
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_SM_CLOCK")[gpu.uuid] == gpu.sm_clock_mhz
        assert dcgm_by_uuid(text, "DCGM_FI_DEV_MEM_CLOCK")[gpu.uuid] == gpu.mem_clock_mhz


async def test_energy_is_a_counter_under_dcgm_exporters_exact_name(client, publisher):
    tick = sim_tick("node-a", 5)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    # As dcgm-exporter writes it: typed counter, and the series a DCGM dashboard queries, not
    # DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION_total.
    lines = text.splitlines()
    assert f"# TYPE {ENERGY} counter" in lines
    assert [line for line in lines if line.startswith(f"# HELP {ENERGY} ")] == [
        f"# HELP {ENERGY} Total energy consumption since boot (in mJ)."
    ]
    sent = [line for line in lines if line.startswith(f"{ENERGY}{{")]
    assert len(sent) == GPUS
    for gpu in tick.gpus:
        [line] = [line for line in sent if f'UUID="{gpu.uuid}"' in line]
        assert float(line.rsplit(" ", 1)[1]) == round(gpu.energy_j * 1000)
    assert f"{ENERGY}_total" not in text


async def test_a_gpu_name_that_spells_a_header_line_stays_as_it_was_sent(client, publisher):
    tick = sim_tick("node-a", 5)
    trick = f"H100\n# TYPE {ENERGY}_total counter\n# HELP {ENERGY}_total x"
    gpus = [msgspec.structs.replace(gpu, name=trick) for gpu in tick.gpus]
    await publish_until_seen(client.app, publisher[0], msgspec.structs.replace(tick, gpus=gpus))

    text = await scrape(client)

    # The name stays in its label, escaped; only the family's own header is renamed, once.
    assert [s.labels["modelName"] for s in samples(text, ENERGY)] == [trick] * GPUS
    assert text.count(f"\n# TYPE {ENERGY} counter\n") == 1
    assert promtool(text).returncode in (0, PROMTOOL_LINT_EXIT)


async def test_a_metric_a_gpu_does_not_report_is_absent_not_zero(client, publisher):
    tick = sim_tick("node-b", 9, faults=True)
    await publish_until_seen(client.app, publisher[0], tick)
    rtx, h100, lost, l40s = tick.gpus
    assert rtx.power_w is None and rtx.fan_pct is not None
    assert h100.fan_pct is None and l40s.fan_pct is None and lost.error is not None

    text = await scrape(client)

    fans = dcgm_by_uuid(text, "DCGM_FI_DEV_FAN_SPEED")
    assert set(fans) == {rtx.uuid}  # the data-centre GPUs have no fan: no series, not a 0
    power = dcgm_by_uuid(text, "DCGM_FI_DEV_POWER_USAGE")
    assert set(power) == {h100.uuid, l40s.uuid}  # GPU 0's power is not supported; 2 is lost
    assert rtx.uuid in dcgm_by_uuid(text, "DCGM_FI_DEV_GPU_UTIL")


async def test_a_gpu_in_error_sends_no_gpu_metric(client, publisher):
    tick = sim_tick("node-b", 9, faults=True)
    await publish_until_seen(client.app, publisher[0], tick)
    lost = tick.gpus[2]
    assert lost.error is not None

    text = await scrape(client)

    assert lost.uuid not in text
    others = {gpu.uuid for gpu in tick.gpus} - {lost.uuid}
    assert set(dcgm_by_uuid(text, "DCGM_FI_DEV_GPU_UTIL")) == others


async def test_a_host_that_stopped_ticking_sends_no_gpu_metric_but_its_age(client, publisher):
    await publish_until_seen(client.app, publisher[0], sim_tick("node-a", 5))
    an_hour_later = time.time() + 3600
    app = client.app
    collector = PipelineCollector(
        app[FEED], app[WRITER].current, app[STORE].file_bytes, clock=lambda: an_hour_later
    )

    text = exposition(collector.families()).decode()

    assert samples(text, "DCGM_FI_DEV_GPU_UTIL") == []
    ages = {s.labels["host"]: s.value for s in samples(text, "pycudawatch_last_tick_age_seconds")}
    assert ages["node-a"] >= 3600


async def test_a_host_whose_clock_is_an_hour_behind_still_sends_its_gpu_metrics(client, publisher):
    # Its tick arrived just now: the hub judges a host's silence on its own clock.
    behind = msgspec.structs.replace(sim_tick("node-c", 7), ts=time.time() - 3600)
    await publish_until_seen(client.app, publisher[0], behind)

    text = await scrape(client)

    hosts = {s.labels["Hostname"] for s in samples(text, "DCGM_FI_DEV_GPU_UTIL")}
    assert hosts == {"node-c"}
    ages = {s.labels["host"]: s.value for s in samples(text, "pycudawatch_last_tick_age_seconds")}
    assert ages["node-c"] >= 3600  # the age of its tick's own timestamp, as stated


# -- the pipeline's own metrics ------------------------------------------------------------------


def writer_status() -> WriterStatus:
    now = time.time()
    return WriterStatus(
        state="ok",
        updated_ts=now,
        started_ts=now - 60,
        stored_ticks=120,
        stored_readings=480,
        malformed_messages=3,
        replay_gaps=2,
        lost_ticks=1,
        last_flush_ts=now,
        last_flush_duration_s=0.0042,
    )


def one(text: str, name: str, **labels: str) -> float:
    [sample] = [s for s in samples(text, name) if labels.items() <= s.labels.items()]
    return sample.value


async def test_pipeline_metrics_report_the_sampler_writer_web_and_database(client, publisher):
    db_path = client.app[CONFIG].db_path
    write_status(db_path, writer_status())
    await publish_until_seen(client.app, publisher[0], sim_tick("node-a", 41))
    publisher[0].send_multipart([b"pcw.tick", b"2", b"not msgpack"])
    await wait_until(lambda: client.app[FEED].malformed_messages >= 1, what="the malformed count")

    text = await scrape(client)

    assert one(text, "pycudawatch_ticks_published_total", host="node-a") == 42  # seq 0..41
    assert 0 <= one(text, "pycudawatch_last_tick_age_seconds", host="node-a") < 60
    assert one(text, "pycudawatch_ticks_stored_total") == 120
    assert one(text, "pycudawatch_readings_stored_total") == 480
    assert one(text, "pycudawatch_malformed_messages_total", process="writer") == 3
    assert one(text, "pycudawatch_malformed_messages_total", process="web") == 1
    assert one(text, "pycudawatch_replay_gaps_total") == 2
    assert one(text, "pycudawatch_ticks_lost_total") == 1
    assert one(text, "pycudawatch_writer_last_flush_duration_seconds") == 0.0042
    assert one(text, "pycudawatch_writer_degraded") == 0
    assert one(text, "pycudawatch_database_size_bytes") == database_bytes(db_path)


async def test_without_a_writer_status_its_metrics_are_absent_not_zero(client, publisher):
    await publish_until_seen(client.app, publisher[0], sim_tick("node-a", 0))

    text = await scrape(client)

    assert samples(text, "pycudawatch_readings_stored_total") == []
    assert samples(text, "pycudawatch_malformed_messages_total")[0].labels == {"process": "web"}
    assert one(text, "pycudawatch_ticks_published_total", host="node-a") == 1


# -- one host alone: /metrics?host=NAME (Prometheus' multi-target exporter pattern) ------------


async def test_one_host_alone_has_only_its_gpu_series_and_its_own_sampler_series(client, publisher):
    write_status(client.app[CONFIG].db_path, writer_status())
    a, b = sim_tick("node-a", 5), sim_tick("node-b", 9)
    await publish_until_seen(client.app, publisher[0], a)
    await publish_until_seen(client.app, publisher[0], b)

    response = await client.get("/metrics", params={"host": "node-b"})

    assert response.status == 200 and response.content_type == "text/plain"
    text = await response.text()
    assert set(dcgm_by_uuid(text, "DCGM_FI_DEV_GPU_UTIL")) == {gpu.uuid for gpu in b.gpus}
    assert {s.labels["hostname"] for s in samples(text, ENERGY)} == {"node-b"}
    assert one(text, "pycudawatch_ticks_published_total", host="node-b") == 10
    assert [s.labels for s in samples(text, "pycudawatch_last_tick_age_seconds")] == [
        {"host": "node-b"}
    ]
    # The hub's own series (writer, database, web) are the all-hosts answer's, sent once.
    names = {family.name for family in text_string_to_metric_families(text)}
    assert not any(
        name.startswith(("pycudawatch_writer", "pycudawatch_database")) for name in names
    )
    assert samples(text, "pycudawatch_ticks_stored_total") == []
    assert samples(text, "pycudawatch_malformed_messages_total") == []
    # ... and the all-hosts answer stays as it was.
    everything = await scrape(client)
    assert {s.labels["Hostname"] for s in samples(everything, "DCGM_FI_DEV_GPU_UTIL")} == {
        "node-a",
        "node-b",
    }
    assert one(everything, "pycudawatch_ticks_stored_total") == 120


async def test_one_host_known_only_from_the_file_answers_without_gpu_series(client):
    # the fixture file's hosts ticked long ago: known, stale, so no GPU series
    response = await client.get("/metrics", params={"host": "alpha"})
    assert response.status == 200
    text = await response.text()
    assert samples(text, "DCGM_FI_DEV_GPU_UTIL") == []
    assert samples(text, "pycudawatch_last_tick_age_seconds") == []


async def test_an_unknown_host_is_404_so_prometheus_marks_its_target_down(client, publisher):
    await publish_until_seen(client.app, publisher[0], sim_tick("node-a", 5))
    response = await client.get("/metrics", params={"host": "node-z"})
    assert response.status == 404
    assert await response.json() == {"error": "host='node-z' is not a known host"}


@pytest.mark.parametrize(
    "query",
    [[("host", "")], [("host", "x" * 254)], [("host", "a\tb")], [("host", "a"), ("host", "b")]],
)
async def test_a_bad_or_repeated_host_is_400(client, query):
    response = await client.get("/metrics", params=query)
    assert response.status == 400
    assert (await response.json())["error"].startswith("host")
