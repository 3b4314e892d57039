"""MIG instances through the reader over SimulatedNvml: their GPU and compute instance ids, their
profile as dcgm-exporter's GPU_I_PROFILE shows it, and on the H100 (GPM) each instance's own
graphics activity from its second tick; what NVML cannot give is null, logged once."""

from __future__ import annotations

import logging

import pytest

from common.messages import GpuReading, MigDevice, Tick
from services.sampler.nvml_values import mig_profile
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from tests.conftest import started, tick_after

# Simulated models by index: 0 GeForce RTX 4090, 1 H100 (GPM), 2 A100, 3 L40S.
GPUS = 3
H100, A100 = 1, 2
TICK_S = 10.0
# the simulated MIG layout: (slot, profile, GPU instance id) on each model
H100_LAYOUT = [(0, "1g.10gb", 9), (1, "2g.20gb", 3), (3, "3g.40gb", 2)]
A100_LAYOUT = [(0, "1g.5gb", 9), (1, "2g.10gb", 3), (3, "3g.20gb", 2)]


def sim(clock, cls: type[SimulatedNvml] = SimulatedNvml, **options) -> SimulatedNvml:
    return cls(GPUS, host="testhost", clock=clock.wall, mig_gpus=(H100, A100), **options)


def activity(gpu: GpuReading) -> list[float | None]:
    return [device.gr_engine_active_pct for device in gpu.mig_devices]


def test_each_mig_instance_has_its_ids_and_profile_from_the_first_tick(clock):
    reader = started(sim(clock), clock)

    gpus = reader.read().gpus

    for index, layout in ((H100, H100_LAYOUT), (A100, A100_LAYOUT)):
        devices = gpus[index].mig_devices
        got = [(d.index, d.profile, d.gpu_instance_id) for d in devices]
        assert got == layout
        assert all(d.compute_instance_id == 0 for d in devices)
        assert all(d.name.endswith(f" MIG {d.profile}") for d in devices)
    assert gpus[0].mig_devices == []  # no MIG on the GeForce


def test_the_h100_gives_each_instance_its_activity_from_the_second_tick_the_a100_none(clock):
    reader = started(sim(clock), clock)

    first = reader.read().gpus
    second = tick_after(reader, clock)

    assert activity(first[H100]) == [None, None, None]  # GPM needs two samples
    assert all(value is not None and 0 <= value <= 100 for value in activity(second[H100]))
    assert activity(second[A100]) == [None, None, None]  # no GPM on the A100: null, never 0
    assert all(d.util_gpu_pct is None for d in second[H100].mig_devices)  # NVML gives none


def test_an_instance_is_busy_while_its_own_job_runs_and_idle_while_it_does_not(clock):
    reader = started(sim(clock), clock)
    previous = reader.read().gpus[H100].mig_devices
    busy: list[float] = []
    idle: list[float] = []
    for _ in range(400):  # a little over one load cycle; each instance's job on its own cycle
        devices = tick_after(reader, clock)[H100].mig_devices
        for before, now in zip(previous, devices, strict=True):
            assert now.gr_engine_active_pct is not None
            if before.mem_used_bytes == now.mem_used_bytes == 0:  # no job at either end
                idle.append(now.gr_engine_active_pct)
            elif min(before.mem_used_bytes, now.mem_used_bytes) > 0.8 * now.mem_total_bytes:
                busy.append(now.gr_engine_active_pct)
        previous = devices

    assert len(idle) >= 100 and len(busy) >= 100
    assert max(idle) <= 1
    assert min(busy) >= 60


class CountingNvml(SimulatedNvml):
    """SimulatedNvml that counts the GPM samples allocated and freed and the MIG calls."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.allocated = self.freed = self.metric_calls = self.mig_samples = 0

    def nvmlGpmSampleAlloc(self):  # noqa: N802 (pynvml's names)
        self.allocated += 1
        return super().nvmlGpmSampleAlloc()

    def nvmlGpmSampleFree(self, gpmSample) -> None:  # noqa: N802, N803
        super().nvmlGpmSampleFree(gpmSample)
        self.freed += 1

    def nvmlGpmMetricsGet(self, metricsGet):  # noqa: N802, N803
        self.metric_calls += 1
        return super().nvmlGpmMetricsGet(metricsGet)

    def nvmlGpmMigSampleGet(self, device, gpuInstanceId, gpmSample):  # noqa: N802, N803
        self.mig_samples += 1
        return super().nvmlGpmMigSampleGet(device, gpuInstanceId, gpmSample)


def test_two_samples_per_instance_one_metrics_call_per_instance_a_tick_all_freed_at_close(clock):
    nvml = sim(clock, CountingNvml)
    reader = started(nvml, clock)

    reader.read()
    for _ in range(4):
        tick_after(reader, clock)

    assert nvml.allocated == 2 + 3 * 2  # the H100's own pair, and a pair per instance
    assert nvml.mig_samples == 5 * 3  # each instance sampled once a tick
    assert nvml.metric_calls == 4 * (1 + 3)  # from the second tick: the GPU's and each instance's
    reader.close()
    assert nvml.freed == nvml.allocated


def test_a_changed_mig_layout_frees_the_old_instances_samples_and_starts_anew(clock):
    nvml = sim(clock, CountingNvml)
    reader = started(nvml, clock)
    reader.read()
    tick_after(reader, clock)

    removed = nvml.devices[H100].mig_devices.pop()  # the 3g instance is destroyed
    changed = tick_after(reader, clock)
    after = tick_after(reader, clock)

    assert removed.gpu_instance_id == 2
    assert nvml.freed == 3 * 2  # every instance's pair: the layout is a new one
    assert [d.gpu_instance_id for d in changed[H100].mig_devices] == [9, 3]
    assert activity(changed[H100]) == [None, None]  # one sample of the new layout
    assert all(value is not None for value in activity(after[H100]))
    reader.close()
    assert nvml.freed == nvml.allocated


def test_a_lost_gpu_frees_its_instances_samples(clock):
    nvml = sim(clock, CountingNvml)
    reader = started(nvml, clock)
    reader.read()
    tick_after(reader, clock)

    nvml.lose_gpu(H100)
    lost = tick_after(reader, clock)

    assert lost[H100].error is not None and lost[A100].error is None
    assert nvml.freed == nvml.allocated == 2 + 3 * 2


def test_an_older_driver_without_mig_gpm_gives_null_logged_once_and_is_not_asked_again(
    clock, caplog
):
    caplog.set_level(logging.INFO)
    nvml = sim(clock, CountingNvml)
    nvml.remove_function("nvmlGpmMigSampleGet")
    reader = started(nvml, clock)

    ticks = [reader.read().gpus] + [tick_after(reader, clock) for _ in range(3)]

    assert all(activity(gpus[H100]) == [None, None, None] for gpus in ticks)
    assert ticks[-1][H100].health.gr_engine_active_pct is not None  # the GPU's own GPM is there
    assert [d.gpu_instance_id for d in ticks[-1][H100].mig_devices] == [9, 3, 2]
    lines = [r for r in caplog.records if "MIG GPM" in r.getMessage()]
    assert len(lines) == 1 and "Function Not Found" in lines[0].getMessage()
    assert lines[0].levelno < logging.ERROR
    assert nvml.freed == nvml.allocated - 2  # the instances' samples given back at once


def test_a_driver_without_the_instance_ids_gives_null_logged_once_and_no_activity(clock, caplog):
    caplog.set_level(logging.INFO)
    nvml = sim(clock)
    nvml.remove_function("nvmlDeviceGetGpuInstanceId")
    nvml.remove_function("nvmlDeviceGetComputeInstanceId")
    reader = started(nvml, clock)

    ticks = [reader.read().gpus] + [tick_after(reader, clock) for _ in range(2)]

    for gpus in ticks:
        for index in (H100, A100):
            devices = gpus[index].mig_devices
            assert len(devices) == 3 and all(d.mem_total_bytes for d in devices)
            assert all(d.gpu_instance_id is None and d.compute_instance_id is None for d in devices)
            assert activity(gpus[index]) == [None, None, None]  # no id to ask GPM for
    for metric in ("MIG GPU instance id", "MIG compute instance id"):
        lines = [r for r in caplog.records if metric in r.getMessage()]
        assert len(lines) == 2  # once per MIG-enabled GPU, not per instance or tick


def test_the_new_fields_travel_in_the_tick(clock):
    reader = started(sim(clock), clock)
    reader.read()
    reading = reader.read()  # a second tick at the same instant: the rates at that instant
    tick = build_tick(reading, "testhost", "run", 1, clock.wall(), TICK_S)

    decoded = Tick.from_frames(tick.to_frames())

    devices = decoded.gpus[H100].mig_devices
    assert devices == tick.gpus[H100].mig_devices
    assert [(d.profile, d.gpu_instance_id, d.compute_instance_id) for d in devices] == [
        (profile, instance, 0) for _, profile, instance in H100_LAYOUT
    ]
    assert all(d.gr_engine_active_pct is not None for d in devices)


def test_a_tick_of_a_sampler_before_these_fields_decodes_them_as_null():
    old = MigDevice(index=0, uuid="MIG-x", name="NVIDIA A100-SXM4-40GB MIG 1g.5gb")

    assert (old.gpu_instance_id, old.compute_instance_id, old.profile) == (None, None, None)
    assert old.gr_engine_active_pct is None


@pytest.mark.parametrize(
    ("name", "profile"),
    [
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb", "1g.10gb"),
        ("NVIDIA A100-SXM4-40GB MIG 3g.20gb", "3g.20gb"),
        ("NVIDIA H100 80GB HBM3 MIG 1g.10gb+me", "1g.10gb+me"),  # with the media engines
        ("NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb", "3g.20gb"),  # a compute instance of a 3g
        ("NVIDIA H100 80GB HBM3", None),
        ("NVIDIA H100 80GB HBM3 MIG ", None),
        ("NVIDIA H100 80GB HBM3 MIG device", None),
    ],
)
def test_the_profile_is_the_gpu_instances_as_dcgm_exporter_shows_it(name, profile):
    assert mig_profile(name) == profile
