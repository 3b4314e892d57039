"""/metrics against dcgm-exporter's default counters: each one NVML gives, by its name and type.

DEFAULT_COUNTERS is dcgm-exporter's etc/default-counters.csv (its uncommented lines, with the
profiling fields and the reserved frame buffer of its later releases), written out here by hand:
not derived from the code under test. NOT_GIVEN names what this project does not send, and why.
The profiling fields (DCGM_FI_PROF_*) are gauges there, the PCIe ones a rate in bytes per second;
only the H100 of the simulated GPUs sends them (NVML's GPM, from its second tick).
"""

from __future__ import annotations

import re

from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from tests.web.test_metrics import client, publish_until_seen, samples, scrape  # noqa: F401

DEFAULT_COUNTERS = {
    "DCGM_FI_DEV_SM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEM_CLOCK": "gauge",
    "DCGM_FI_DEV_MEMORY_TEMP": "gauge",
    "DCGM_FI_DEV_GPU_TEMP": "gauge",
    "DCGM_FI_DEV_POWER_USAGE": "gauge",
    "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION": "counter",
    "DCGM_FI_DEV_PCIE_TX_THROUGHPUT": "counter",
    "DCGM_FI_DEV_PCIE_RX_THROUGHPUT": "counter",
    "DCGM_FI_DEV_PCIE_REPLAY_COUNTER": "counter",
    "DCGM_FI_DEV_GPU_UTIL": "gauge",
    "DCGM_FI_DEV_MEM_COPY_UTIL": "gauge",
    "DCGM_FI_DEV_ENC_UTIL": "gauge",
    "DCGM_FI_DEV_DEC_UTIL": "gauge",
    "DCGM_FI_DEV_XID_ERRORS": "gauge",
    "DCGM_FI_DEV_FB_FREE": "gauge",
    "DCGM_FI_DEV_FB_USED": "gauge",
    "DCGM_FI_DEV_FB_RESERVED": "gauge",
    "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL": "counter",
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS": "gauge",
    "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS": "counter",
    "DCGM_FI_DEV_ROW_REMAP_FAILURE": "gauge",
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gauge",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "gauge",
    "DCGM_FI_PROF_DRAM_ACTIVE": "gauge",
    "DCGM_FI_PROF_PCIE_TX_BYTES": "gauge",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "gauge",
}
NOT_GIVEN = {
    # a vGPU guest's licence: NVML answers it inside a vGPU virtual machine only
    "DCGM_FI_DEV_VGPU_LICENSE_STATUS",
}
# The labels dcgm-exporter puts on every GPU series; DCGM_FI_DRIVER_VERSION is its "label" field.
LABELS = {"gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "DCGM_FI_DRIVER_VERSION"}
GPUS = 4  # 0 GeForce RTX 4090, 1 H100 (NVLink, HBM, GPM), 2 A100 (NVLink, HBM), 3 L40S


def health_tick(host: str, seq: int):
    """Return a tick of GPUS simulated GPUs of `host` in which GPU 1 has reported XID 79."""
    nvml = SimulatedNvml(GPUS, host=host, remap_gpus=(2,))
    reader = GpuReader(nvml)
    reader.start()
    try:
        reader.read()
        nvml.inject_xid(1, 79)
        return build_tick(reader.read(), host, f"run-{host}", seq, 1.7e9, 1.0)
    finally:
        reader.close()


def types(text: str) -> dict[str, str]:
    return dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.MULTILINE))


async def test_each_default_counter_nvml_gives_is_sent_under_its_name_type_and_labels(
    client,  # noqa: F811
    publisher,
):
    tick = health_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    sent = types(text)
    for name, kind in DEFAULT_COUNTERS.items():
        if name in NOT_GIVEN:
            assert name not in sent
            continue
        assert sent.get(name) == kind, name
        found = samples(text, name)
        assert found, f"{name}: no GPU sent it"
        for sample in found:
            assert set(sample.labels) >= LABELS, name
            assert sample.labels["DCGM_FI_DRIVER_VERSION"] == tick.driver_version


async def test_the_last_xid_carries_its_code_and_meaning_as_dcgm_exporter_labels_it(
    client,  # noqa: F811
    publisher,
):
    tick = health_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    [xid] = samples(text, "DCGM_FI_DEV_XID_ERRORS")
    assert xid.value == 79
    assert xid.labels["UUID"] == tick.gpus[1].uuid
    assert xid.labels["err_code"] == "79"
    assert xid.labels["err_msg"] == "XID 79 (GPU fell off the bus)"


async def test_health_counters_carry_what_the_gpu_read(client, publisher):  # noqa: F811
    tick = health_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    a100 = tick.gpus[2]
    assert a100.health is not None and a100.limits is not None
    by_uuid = {
        name: {s.labels["UUID"]: s.value for s in samples(text, name)}
        for name in (
            "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
            "DCGM_FI_DEV_ROW_REMAP_PENDING",
            "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
            "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH",
            "DCGM_FI_DEV_THERMAL_VIOLATION",
            "DCGM_FI_DEV_MEMORY_TEMP",
        )
    }
    assert by_uuid["DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS"][a100.uuid] == 2
    assert by_uuid["DCGM_FI_DEV_ROW_REMAP_PENDING"][a100.uuid] == 1
    assert by_uuid["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"][a100.uuid] == 2
    assert by_uuid["DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH"][a100.uuid] == 16
    # NVML's nanoseconds, sent in dcgm-exporter's microseconds
    thermal_ns = a100.health.thermal_violation_ns
    assert by_uuid["DCGM_FI_DEV_THERMAL_VIOLATION"][a100.uuid] == thermal_ns // 1000
    # no memory temperature on the GDDR cards: left out, not 0
    geforce, l40s = tick.gpus[0], tick.gpus[3]
    assert set(by_uuid["DCGM_FI_DEV_MEMORY_TEMP"]) == {tick.gpus[1].uuid, a100.uuid}
    assert geforce.uuid not in by_uuid["DCGM_FI_DEV_ECC_DBE_VOL_TOTAL"]
    assert l40s.uuid not in by_uuid["DCGM_FI_DEV_MEMORY_TEMP"]
