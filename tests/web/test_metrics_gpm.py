"""GET /metrics: DCGM's profiling series (DCGM_FI_PROF_*) from the GPU performance metrics (GPM)
of the simulated H100, under dcgm-exporter's names, types, units and labels; none elsewhere."""

from __future__ import annotations

from common.messages import Tick
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from tests.conftest import FakeClock
from tests.web.test_dcgm_coverage import LABELS, types
from tests.web.test_metrics import client, publish_until_seen, samples, scrape  # noqa: F401

GPUS = 4  # 0 GeForce RTX 4090, 1 H100 (GPM), 2 A100, 3 L40S
TICK_S = 10.0
# dcgm-exporter's profiling fields: ratios from 0 to 1, and the GpuHealth percent they come from
RATIOS = {
    "DCGM_FI_PROF_GR_ENGINE_ACTIVE": "gr_engine_active_pct",
    "DCGM_FI_PROF_SM_ACTIVE": "sm_active_pct",
    "DCGM_FI_PROF_SM_OCCUPANCY": "sm_occupancy_pct",
    "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE": "tensor_active_pct",
    "DCGM_FI_PROF_DRAM_ACTIVE": "dram_active_pct",
    "DCGM_FI_PROF_PIPE_FP64_ACTIVE": "fp64_active_pct",
    "DCGM_FI_PROF_PIPE_FP32_ACTIVE": "fp32_active_pct",
    "DCGM_FI_PROF_PIPE_FP16_ACTIVE": "fp16_active_pct",
}
# ... and bytes per second
RATES = {
    "DCGM_FI_PROF_PCIE_TX_BYTES": "gpm_pcie_tx_bytes_per_s",
    "DCGM_FI_PROF_PCIE_RX_BYTES": "gpm_pcie_rx_bytes_per_s",
}
PROF = {**RATIOS, **RATES}


def training_tick(host: str, seq: int, ticks: int = 2) -> Tick:
    """Return the tick read after `ticks` ticks 10 s apart, with the H100 training throughout."""
    clock = FakeClock()
    nvml = SimulatedNvml(GPUS, host=host, clock=clock.wall)
    reader = GpuReader(nvml, monotonic=clock.monotonic)
    reader.start()
    try:
        for _ in range(2000):  # until the H100 trains at both ends of a tick
            reading = reader.read()
            if ticks == 1 or (reading.gpus[1].util_gpu_pct or 0) >= 80:
                break
            clock.advance(TICK_S)
        for _ in range(ticks - 1):
            clock.advance(TICK_S)
            reading = reader.read()
        return build_tick(reading, host, f"run-{host}", seq, clock.wall(), TICK_S)
    finally:
        reader.close()


async def test_the_h100_alone_sends_every_prof_series_as_a_gauge_with_dcgm_labels(
    client,  # noqa: F811
    publisher,
):
    tick = training_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    h100 = tick.gpus[1]
    sent = types(text)
    for name in PROF:
        assert sent.get(name) == "gauge", name
        [sample] = samples(text, name)  # one GPU has GPM: one sample, none for the others
        assert sample.labels["UUID"] == h100.uuid, name
        assert sample.labels["modelName"] == "NVIDIA H100 80GB HBM3"
        assert set(sample.labels) >= LABELS, name
        assert sample.labels["DCGM_FI_DRIVER_VERSION"] == tick.driver_version


async def test_activities_are_dcgm_ratios_and_pcie_is_bytes_per_second(
    client,  # noqa: F811
    publisher,
):
    tick = training_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    health = tick.gpus[1].health
    assert health is not None and health.gr_engine_active_pct >= 70
    for name, field in RATIOS.items():
        [sample] = samples(text, name)
        assert 0 <= sample.value <= 1, name
        assert abs(sample.value - getattr(health, field) / 100) < 1e-9, name
    [busy] = samples(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
    assert busy.value >= 0.7
    for name, field in RATES.items():
        [sample] = samples(text, name)
        assert sample.value == getattr(health, field), name
    [rx] = samples(text, "DCGM_FI_PROF_PCIE_RX_BYTES")
    assert rx.value >= 10**9  # GB/s while training: bytes, not NVML's MiB


async def test_the_first_tick_has_no_prof_series_not_zeros(client, publisher):  # noqa: F811
    tick = training_tick("node-a", 3, ticks=1)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    assert "DCGM_FI_DEV_GPU_UTIL{" in text
    for name in PROF:
        assert samples(text, name) == [], name
