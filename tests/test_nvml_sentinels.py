"""NVML's "not available" sentinels become null, never 0 and never a huge number.

NVML says a value is not available with NVML_VALUE_NOT_AVAILABLE: -1 in nvml.h, so all ones of
the field's width as pynvml hands it over (0xFFFFFFFF for an unsigned int, 0xFFFFFFFFFFFFFFFF for
an unsigned long long), or -1 where a binding passes it signed. One test per metric, each with
both forms, straight from the reader (before the codec's range checks could hide it) and in the
tick that is sent.
"""

from __future__ import annotations

import pytest

from common.messages import GpuReading
from common.metrics import CORE_METRIC_NAMES
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick

# NVML call -> the reading's fields it gives. GPU 0 is the simulated GeForce: it has a fan.
SOURCES = {
    "nvmlDeviceGetUtilizationRates": ("util_gpu_pct", "util_mem_pct"),
    "nvmlDeviceGetMemoryInfo": (
        "mem_used_bytes",
        "mem_total_bytes",
        "mem_free_bytes",
        "mem_reserved_bytes",
    ),
    "nvmlDeviceGetTemperature": ("temp_c",),
    "nvmlDeviceGetPowerUsage": ("power_w",),
    "nvmlDeviceGetEnforcedPowerLimit": ("power_limit_w",),
    "nvmlDeviceGetTotalEnergyConsumption": ("energy_j",),
    "nvmlDeviceGetFanSpeed": ("fan_pct",),
    "nvmlDeviceGetClockInfo": ("sm_clock_mhz", "mem_clock_mhz"),
    "nvmlDeviceGetPerformanceState": ("pstate",),
}
FORMS = {"all ones": False, "minus one": True}


def read_with(clock, function_name: str | None, signed: bool = False, **sim_options) -> tuple:
    """Return (sim, reader's GPU 0, sent GPU 0) with function_name answering the sentinel."""
    sim = SimulatedNvml(2, host="sentinels", clock=clock.wall, **sim_options)
    if function_name is not None:
        sim.report_not_available(0, function_name, signed=signed)
    reader = GpuReader(sim, monotonic=clock.monotonic)
    reader.start()
    reading = reader.read()
    tick = build_tick(reading, "sentinels", "0123456789abcdef", 0, clock.wall(), 60.0)
    return sim, reading.gpus[0], tick.gpus[0]


def test_every_metric_sent_has_a_sentinel_test():
    covered = {name for names in SOURCES.values() for name in names}

    # the health metrics' sentinels: tests/test_health_reads.py and tests/test_gpm_reads.py
    assert covered == {*CORE_METRIC_NAMES, "mem_free_bytes", "mem_reserved_bytes"}
    assert covered <= set(GpuReading.__struct_fields__)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("function_name", SOURCES)
def test_an_nvml_value_not_available_is_null_not_zero_nor_huge(clock, function_name, form):
    _, baseline, _ = read_with(clock, None)
    _, read, sent = read_with(clock, function_name, signed=FORMS[form])

    for name in SOURCES[function_name]:
        assert getattr(baseline, name) is not None, f"{name} is read when available"
        assert getattr(read, name) is None, f"{name} from {function_name} ({form})"
        assert getattr(sent, name) is None, f"{name} sent"
    others = [n for n in CORE_METRIC_NAMES if n not in SOURCES[function_name]]
    assert [getattr(read, n) for n in others] == [getattr(sent, n) for n in others]
    assert all(getattr(read, n) is not None for n in others), "the other metrics are read"
    assert read.error is None


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize(
    "function_name",
    ["nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v3"],
)
def test_a_process_memory_nvml_cannot_tell_is_null_not_zero(clock, function_name, form):
    # a GPU whose processes NVML lists: the GeForce runs a training job (compute) and, half-way
    # through it, a render (graphics); find a time when the listed kind runs
    kind = "graphics" if "Graphics" in function_name else "compute"
    for _ in range(400):
        _, _, sent = read_with(clock, function_name, signed=FORMS[form], process_names=("t",))
        if any(process.kind == kind for process in sent.processes or []):
            break
        clock.advance(13.0)
    else:
        pytest.fail(f"no {kind} process on the simulated GeForce")

    listed = [process for process in sent.processes if process.kind == kind]
    assert listed and all(process.used_mem_bytes is None for process in listed)
    assert all(process.pid > 0 for process in listed)


@pytest.mark.parametrize("form", FORMS)
def test_a_mig_device_memory_nvml_cannot_tell_is_null_not_zero(clock, form):
    sim = SimulatedNvml(2, host="sentinels", clock=clock.wall, mig_gpus=(1,))
    reader = GpuReader(sim, monotonic=clock.monotonic)
    reader.start()
    baseline = reader.read().gpus[1].mig_devices
    sim.report_not_available(1, "nvmlDeviceGetMemoryInfo", signed=FORMS[form])

    devices = reader.read().gpus[1].mig_devices

    assert baseline and all(device.mem_total_bytes for device in baseline)
    assert len(devices) == len(baseline)
    assert all((d.mem_used_bytes, d.mem_total_bytes) == (None, None) for d in devices)
