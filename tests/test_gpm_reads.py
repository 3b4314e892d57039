"""GPU performance metrics (GPM) through the reader over SimulatedNvml: the H100 has them from its
second tick, the other models never; each tracks the GPU's load; what NVML cannot give is null."""

from __future__ import annotations

import logging
import math

import pytest

from common.messages import GpuHealth, GpuReading
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from tests.conftest import started, tick_after

# Simulated models by index: 0 GeForce RTX 4090, 1 H100 (GPM), 2 A100, 3 L40S.
GPUS = 4
H100 = "NVIDIA H100 80GB HBM3"
TICK_S = 10.0
MIB = 1 << 20
ACTIVITIES = (
    "gr_engine_active_pct",
    "sm_active_pct",
    "sm_occupancy_pct",
    "tensor_active_pct",
    "dram_active_pct",
    "fp64_active_pct",
    "fp32_active_pct",
    "fp16_active_pct",
)
GPM_FIELDS = (*ACTIVITIES, "gpm_pcie_tx_bytes_per_s", "gpm_pcie_rx_bytes_per_s")


def sim(clock, gpus: int = GPUS, **options) -> SimulatedNvml:
    return SimulatedNvml(gpus, host="testhost", clock=clock.wall, **options)


def gpm(gpu: GpuReading) -> dict[str, float | int | None]:
    assert gpu.error is None and gpu.health is not None
    return {name: getattr(gpu.health, name) for name in GPM_FIELDS}


def busy_tick(reader: GpuReader, clock, index: int) -> list[GpuReading]:
    """Return a tick in which GPU index trains: 70 % utilization or more for the last 100 s,
    longer than the end of a load cycle's ramp stays so high."""
    busy_reads = 0
    for _ in range(600):
        gpus = tick_after(reader, clock)
        busy_reads = busy_reads + 1 if (gpus[index].util_gpu_pct or 0) >= 70 else 0
        if busy_reads > 10:
            return gpus
    raise AssertionError(f"GPU {index} never trained")


def test_the_h100_has_every_gpm_metric_from_its_second_tick_the_others_none(clock):
    reader = started(sim(clock), clock)

    first = reader.read().gpus
    second = tick_after(reader, clock)

    assert all(value is None for value in gpm(first[1]).values())  # GPM needs two samples
    values = gpm(second[1])
    assert all(value is not None for value in values.values()), values
    assert all(0 <= values[name] <= 100 for name in ACTIVITIES)
    for other in (0, 2, 3):  # GeForce, A100, L40S: no GPM, null, never 0
        assert all(value is None for value in gpm(second[other]).values())
        assert second[other].health.pcie_link_gen is not None  # the rest of their health is there


def test_a_busy_gpu_is_far_more_active_than_an_idle_one_and_trains_on_its_tensor_cores(clock):
    nvml = sim(clock, gpus=2, names=(H100, H100), idle_gpus=(1,))
    reader = started(nvml, clock)

    busy, idle = (gpm(gpu) for gpu in busy_tick(reader, clock, 0))

    assert busy["gr_engine_active_pct"] >= 70 and idle["gr_engine_active_pct"] <= 2
    assert busy["sm_active_pct"] < busy["gr_engine_active_pct"]
    assert busy["tensor_active_pct"] >= 40 and idle["tensor_active_pct"] <= 1
    assert busy["fp16_active_pct"] > busy["fp32_active_pct"] > busy["fp64_active_pct"] > 0
    assert 20 <= busy["dram_active_pct"] <= 70
    # PCIe: GB/s while training, in bytes (NVML's MiB/s times 2**20), more received than sent
    assert 10**9 <= busy["gpm_pcie_rx_bytes_per_s"] <= 5 * 10**9
    assert busy["gpm_pcie_tx_bytes_per_s"] < busy["gpm_pcie_rx_bytes_per_s"]
    assert idle["gpm_pcie_rx_bytes_per_s"] < MIB


def test_the_activity_is_over_the_time_since_the_previous_tick_and_follows_the_load(clock):
    reader = started(sim(clock), clock)
    steady = []  # (utilization at both ends, graphics activity between) where the load held
    actives = []
    for _ in range(400):  # a little over one load cycle in 10 s ticks
        before = reader.read().gpus[1].util_gpu_pct
        gpu = tick_after(reader, clock)[1]
        actives.append(gpu.health.gr_engine_active_pct)
        if abs(before - gpu.util_gpu_pct) <= 10:
            steady.append(((before + gpu.util_gpu_pct) / 2, gpu.health.gr_engine_active_pct))

    assert max(actives) >= 75 and min(actives) <= 1  # training, then idle
    assert len(steady) >= 300
    # graphics activity is the load: within the jitter of the utilization at the two ends
    assert all(abs(active - util) <= 12 for util, active in steady)


def test_an_older_driver_without_gpm_gives_null_logged_once_per_gpu_and_never_as_an_error(
    clock, caplog
):
    nvml = sim(clock)
    nvml.remove_function("nvmlGpmQueryDeviceSupport")
    reader = started(nvml, clock)
    caplog.set_level(logging.INFO)

    ticks = [tick_after(reader, clock) for _ in range(3)]

    assert all(value is None for gpus in ticks for gpu in gpus for value in gpm(gpu).values())
    assert all(gpus[1].health.mem_temp_c is not None for gpus in ticks)  # the rest is read
    lines = [r for r in caplog.records if "GPM" in r.getMessage()]
    assert len(lines) == GPUS  # once per GPU, not per tick
    assert all("Function Not Found" in r.getMessage() for r in lines)
    assert all(r.levelno < logging.ERROR for r in lines)


def test_a_gpu_without_gpm_is_logged_once_at_info(clock, caplog):
    caplog.set_level(logging.INFO)
    reader = started(sim(clock), clock)

    for _ in range(3):
        tick_after(reader, clock)

    lines = [r for r in caplog.records if "GPM" in r.getMessage()]
    assert len(lines) == GPUS - 1  # the GeForce, the A100 and the L40S; not the H100
    assert all(r.levelno == logging.INFO and "Not Supported" in r.getMessage() for r in lines)


class CountingNvml(SimulatedNvml):
    """SimulatedNvml that counts the GPM samples allocated and freed, and the calls per tick."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.allocated = self.freed = self.support_queries = self.metric_calls = 0

    def nvmlGpmSampleAlloc(self):  # noqa: N802 (pynvml's names)
        sample = super().nvmlGpmSampleAlloc()
        self.allocated += 1
        return sample

    def nvmlGpmSampleFree(self, gpmSample) -> None:  # noqa: N802, N803
        super().nvmlGpmSampleFree(gpmSample)
        self.freed += 1

    def nvmlGpmQueryDeviceSupport(self, device):  # noqa: N802
        self.support_queries += 1
        return super().nvmlGpmQueryDeviceSupport(device)

    def nvmlGpmMetricsGet(self, metricsGet):  # noqa: N802, N803
        self.metric_calls += 1
        return super().nvmlGpmMetricsGet(metricsGet)


def test_support_is_asked_once_samples_allocated_once_and_all_metrics_in_one_call(clock):
    nvml = CountingNvml(GPUS, clock=clock.wall)
    reader = started(nvml, clock)

    for _ in range(5):
        tick_after(reader, clock)

    assert nvml.support_queries == GPUS  # once per GPU
    assert nvml.allocated == 2  # two samples, for the one GPU with GPM
    assert nvml.metric_calls == 4  # one call a tick, from the second
    reader.close()
    assert nvml.freed == 2


def test_a_lost_gpu_frees_its_samples_and_starts_anew_when_it_is_back(clock):
    nvml = CountingNvml(GPUS, clock=clock.wall)
    reader = started(nvml, clock)
    tick_after(reader, clock)
    tick_after(reader, clock)

    nvml.lose_gpu(1)
    lost = tick_after(reader, clock)
    nvml.restore()
    back = tick_after(reader, clock)
    again = tick_after(reader, clock)

    assert lost[1].error is not None and lost[0].error is None
    assert nvml.freed == 2
    assert all(value is None for value in gpm(back[1]).values())  # one sample since it is back
    assert all(value is not None for value in gpm(again[1]).values())


def test_a_failed_sample_is_null_for_that_tick_and_the_next_pair_starts_after_it(clock):
    nvml = sim(clock)
    reader = started(nvml, clock)
    tick_after(reader, clock)
    nvml.fail_metric(1, "nvmlGpmSampleGet")

    failed = tick_after(reader, clock)
    nvml.restore()
    first_after = tick_after(reader, clock)
    second_after = tick_after(reader, clock)

    assert failed[1].error is None and gpm(failed[1])["gr_engine_active_pct"] is None
    assert gpm(first_after[1])["gr_engine_active_pct"] is None
    assert gpm(second_after[1])["gr_engine_active_pct"] is not None


class OddValuesNvml(SimulatedNvml):
    """SimulatedNvml whose GPM answers: graphics a hair over 100 %, SM activity NaN, tensor
    activity failed on its own, and PCIe RX negative."""

    def nvmlGpmMetricsGet(self, metricsGet):  # noqa: N802, N803
        answer = super().nvmlGpmMetricsGet(metricsGet)
        for entry in answer.metrics[: answer.numMetrics]:
            if entry.metricId == self.NVML_GPM_METRIC_GRAPHICS_UTIL:
                entry.value = 100.0000001
            elif entry.metricId == self.NVML_GPM_METRIC_SM_UTIL:
                entry.value = math.nan
            elif entry.metricId == self.NVML_GPM_METRIC_ANY_TENSOR_UTIL:
                entry.nvmlReturn = self.NVML_ERROR_NOT_SUPPORTED
            elif entry.metricId == self.NVML_GPM_METRIC_PCIE_RX_PER_SEC:
                entry.value = -1.0
        return answer


def test_a_value_nvml_cannot_tell_is_null_and_the_rest_passes_the_codec(clock, caplog):
    caplog.set_level(logging.INFO)
    reader = started(OddValuesNvml(GPUS, clock=clock.wall), clock)
    tick_after(reader, clock)

    reading = reader.read()
    health: GpuHealth = reading.gpus[1].health
    tick = build_tick(reading, "testhost", "run", 0, clock.wall(), 1.0)

    assert health.gr_engine_active_pct == 100.0
    assert health.sm_active_pct is None and health.tensor_active_pct is None
    assert health.gpm_pcie_rx_bytes_per_s is None and health.gpm_pcie_tx_bytes_per_s is not None
    assert tick.gpus[1].health == health  # nothing out of range for the codec
    tensor_lines = [r for r in caplog.records if "tensor_active_pct" in r.getMessage()]
    assert len(tensor_lines) == 1 and tensor_lines[0].levelno == logging.INFO
    reader.read()
    assert len([r for r in caplog.records if "tensor_active_pct" in r.getMessage()]) == 1


def test_the_simulated_metrics_are_the_same_for_the_same_clock(clock):
    def values() -> list[dict[str, float | int | None]]:
        clock.wall_s = 1_700_000_000.0
        reader = started(sim(clock), clock)
        found = [gpm(tick_after(reader, clock)[1]) for _ in range(20)]
        reader.close()
        return found

    assert values() == values()


def test_two_samples_of_different_gpus_are_refused(clock):
    nvml = sim(clock, gpus=2, names=(H100, H100))
    nvml.nvmlInit()
    first, second = nvml.nvmlGpmSampleAlloc(), nvml.nvmlGpmSampleAlloc()
    nvml.nvmlGpmSampleGet(nvml.devices[0], first)
    clock.advance(TICK_S)
    nvml.nvmlGpmSampleGet(nvml.devices[1], second)
    request = nvml.c_nvmlGpmMetricsGet_t()
    request.version = nvml.NVML_GPM_METRICS_GET_VERSION
    request.numMetrics = 1
    request.sample1, request.sample2 = first, second
    request.metrics[0].metricId = nvml.NVML_GPM_METRIC_GRAPHICS_UTIL

    with pytest.raises(nvml.NVMLError) as refused:
        nvml.nvmlGpmMetricsGet(request)

    assert refused.value.value == nvml.NVML_ERROR_INVALID_ARGUMENT
