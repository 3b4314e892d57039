"""GET /metrics: each MIG instance's own series (FB_USED, FB_FREE and, on the H100, the graphics
activity from GPM) with the GPU's labels and GPU_I_PROFILE and GPU_I_ID, as dcgm-exporter labels
them; the GPU's own series unchanged; a value not known has no sample."""

from __future__ import annotations

import msgspec

from common.messages import GpuReading, MigDevice, Tick
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from services.web.metrics import dcgm_families, exposition
from tests.conftest import FakeClock
from tests.web.test_metrics import client, publish_until_seen, samples, scrape  # noqa: F401

GPUS = 3  # 0 GeForce RTX 4090, 1 H100 (GPM) in MIG mode, 2 A100 in MIG mode
H100, A100 = 1, 2
TICK_S = 10.0
MIB = 1 << 20
MIG_NAMES = ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE", "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
GPU_LABELS = {
    "gpu",
    "UUID",
    "pci_bus_id",
    "device",
    "modelName",
    "Hostname",
    "hostname",
    "DCGM_FI_DRIVER_VERSION",
}


def mig_tick(host: str, seq: int, ticks: int = 2, **options) -> Tick:
    """Return the tick read after `ticks` ticks 10 s apart of GPUS GPUs, two in MIG mode."""
    clock = FakeClock()
    nvml = SimulatedNvml(GPUS, host=host, clock=clock.wall, mig_gpus=(H100, A100), **options)
    reader = GpuReader(nvml, monotonic=clock.monotonic)
    reader.start()
    try:
        reading = reader.read()
        for _ in range(ticks - 1):
            clock.advance(TICK_S)
            reading = reader.read()
        return build_tick(reading, host, f"run-{host}", seq, clock.wall(), TICK_S)
    finally:
        reader.close()


def by_instance(text: str, name: str) -> dict[tuple[str, str], object]:
    """Return the MIG samples of one field by (UUID of the GPU, GPU_I_ID)."""
    return {
        (s.labels["UUID"], s.labels["GPU_I_ID"]): s
        for s in samples(text, name)
        if "GPU_I_ID" in s.labels
    }


async def test_each_mig_instance_has_its_own_series_labelled_as_dcgm_exporter_does(
    client,  # noqa: F811
    publisher,
):
    tick = mig_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    for name in ("DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE"):
        found = by_instance(text, name)
        assert len(found) == 6, name  # three instances on each of two GPUs
        for index in (H100, A100):
            gpu = tick.gpus[index]
            for mig in gpu.mig_devices:
                sample = found[(gpu.uuid, str(mig.gpu_instance_id))]
                # the parent GPU's labels and the two of the instance, nothing else
                assert set(sample.labels) == GPU_LABELS | {"GPU_I_PROFILE", "GPU_I_ID"}
                assert sample.labels["GPU_I_PROFILE"] == mig.profile
                assert sample.labels["gpu"] == str(index)
                assert sample.labels["device"] == f"nvidia{index}"
                assert sample.labels["modelName"] == gpu.name
                assert sample.labels["pci_bus_id"] == gpu.pci_bus_id
                assert sample.labels["Hostname"] == sample.labels["hostname"] == "node-a"
                assert sample.labels["DCGM_FI_DRIVER_VERSION"] == tick.driver_version
                used_mib = mig.mem_used_bytes // MIB
                free_mib = (mig.mem_total_bytes - mig.mem_used_bytes) // MIB
                assert sample.value == (used_mib if name.endswith("USED") else free_mib)
    profiles = {
        s.labels["GPU_I_PROFILE"] for s in by_instance(text, "DCGM_FI_DEV_FB_USED").values()
    }
    assert profiles == {"1g.10gb", "2g.20gb", "3g.40gb", "1g.5gb", "2g.10gb", "3g.20gb"}


async def test_the_h100s_instances_send_their_graphics_activity_as_a_ratio_the_a100s_none(
    client,  # noqa: F811
    publisher,
):
    tick = mig_tick("node-a", 3)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    found = by_instance(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE")
    h100 = tick.gpus[H100]
    assert set(found) == {(h100.uuid, str(m.gpu_instance_id)) for m in h100.mig_devices}
    for mig in h100.mig_devices:
        sample = found[(h100.uuid, str(mig.gpu_instance_id))]
        assert 0 <= sample.value <= 1
        assert abs(sample.value - mig.gr_engine_active_pct / 100) < 1e-9
    # the H100's own, as before: one sample, without GPU_I_* labels
    own = [s for s in samples(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE") if "GPU_I_ID" not in s.labels]
    assert [s.labels["UUID"] for s in own] == [h100.uuid]


async def test_a_first_tick_sends_no_instance_activity_and_memory_as_ever(
    client,  # noqa: F811
    publisher,
):
    tick = mig_tick("node-a", 0, ticks=1)
    await publish_until_seen(client.app, publisher[0], tick)

    text = await scrape(client)

    assert by_instance(text, "DCGM_FI_PROF_GR_ENGINE_ACTIVE") == {}  # not known: no sample, not 0
    assert len(by_instance(text, "DCGM_FI_DEV_FB_USED")) == 6


def test_the_gpus_own_series_are_the_same_with_or_without_its_instances():
    tick = mig_tick("node-a", 3)
    without = msgspec.structs.replace(
        tick,
        gpus=[msgspec.structs.replace(gpu, mig_devices=[]) for gpu in tick.gpus],
    )

    with_lines = exposition(dcgm_families([tick])).decode().splitlines()
    without_lines = exposition(dcgm_families([without])).decode().splitlines()

    mig_lines = [line for line in with_lines if "GPU_I_ID=" in line]
    assert len(mig_lines) == 6 + 6 + 3  # FB_USED, FB_FREE on six instances, activity on three
    assert {line.split("{", 1)[0] for line in mig_lines} == set(MIG_NAMES)
    assert [line for line in with_lines if "GPU_I_ID=" not in line] == without_lines


def test_an_instance_without_an_id_or_a_memory_figure_sends_no_series_for_it():
    tick = mig_tick("node-a", 3)
    h100 = tick.gpus[H100]
    first, second, third = h100.mig_devices
    changed = [
        msgspec.structs.replace(first, gpu_instance_id=None),  # no GPU_I_ID: no series at all
        msgspec.structs.replace(second, mem_used_bytes=None),  # memory not known: no FB sample
        third,
    ]
    gpus = list(tick.gpus)
    gpus[H100] = msgspec.structs.replace(h100, mig_devices=changed)
    text = exposition(dcgm_families([msgspec.structs.replace(tick, gpus=gpus)])).decode()

    h100_lines = [line for line in text.splitlines() if h100.uuid in line and "GPU_I_ID=" in line]
    ids = {line.split('GPU_I_ID="', 1)[1].split('"', 1)[0] for line in h100_lines}
    assert ids == {str(second.gpu_instance_id), str(third.gpu_instance_id)}
    second_lines = [line for line in h100_lines if f'GPU_I_ID="{second.gpu_instance_id}"' in line]
    assert [line.split("{", 1)[0] for line in second_lines] == ["DCGM_FI_PROF_GR_ENGINE_ACTIVE"]


def test_compute_instances_of_one_gpu_instance_make_one_series_not_duplicates():
    # three compute instances (1c.3g.20gb) share GPU instance 1 and its memory
    migs = [
        MigDevice(
            index=i, uuid=f"MIG-{i}", name="NVIDIA A100-SXM4-40GB MIG 1c.3g.20gb",
            mem_used_bytes=3 << 30, mem_total_bytes=20 << 30,
            gpu_instance_id=1, compute_instance_id=i, profile="3g.20gb",
        )
        for i in range(3)
    ]  # fmt: skip
    gpu = GpuReading(index=0, uuid="GPU-a", name="NVIDIA A100-SXM4-40GB", mig_devices=migs)
    text = exposition(dcgm_families([Tick("h", "run", 1, 1.7e9, 1.0, "550", None, [gpu])]))

    lines = [line for line in text.decode().splitlines() if "GPU_I_ID" in line]
    assert len(lines) == 2  # FB_USED and FB_FREE of GPU instance 1, once each
    assert len({line.rsplit(" ", 1)[0] for line in lines}) == 2
