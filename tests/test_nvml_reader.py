"""The NVML reader over SimulatedNvml (the only fake: it stands in for the pynvml module)."""

from __future__ import annotations

import logging

import msgspec
import pytest

from common.messages import GpuReading, Tick
from common.metrics import CORE_METRIC_NAMES, METRIC_NAMES
from common.throttle import ThrottledLog
from services.sampler import ticks
from services.sampler.nvml import REINIT_BACKOFF_S, GpuReader, NvmlUnavailableError
from services.sampler.simulated_nvml import (
    NVMLError_DriverNotLoaded,
    NVMLError_LibraryNotFound,
    NVMLError_Uninitialized,
    SimulatedNvml,
)
from services.sampler.ticks import build_tick
from tests.conftest import started

# Simulated models by index: 0 GeForce RTX 4090 (fan), 1 H100, 2 A100, 3 L40S (passive).
GPUS = 4


class CountingNvml(SimulatedNvml):
    """SimulatedNvml that records when nvmlInit was tried (on the reader's monotonic clock)."""

    def __init__(self, *args: object, monotonic: object = None, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self._monotonic = monotonic
        self.init_attempts: list[float] = []

    def nvmlInit(self) -> None:  # noqa: N802 (pynvml's name)
        self.init_attempts.append(self._monotonic())
        super().nvmlInit()


class V1OnlyNvml(SimulatedNvml):
    """SimulatedNvml of an older driver: nvmlDeviceGetMemoryInfo_v2 is not in its library."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.v2_calls = 0

    def nvmlDeviceGetMemoryInfo(self, handle: object, version: int | None = None) -> object:  # noqa: N802
        if version is not None:
            self.v2_calls += 1
            raise self.NVMLError(13)  # NVML_ERROR_FUNCTION_NOT_FOUND
        return super().nvmlDeviceGetMemoryInfo(handle)


class UnknownPstateNvml(SimulatedNvml):
    """SimulatedNvml whose GPU 1 answers NVML_PSTATE_UNKNOWN (32), as some drivers do."""

    def nvmlDeviceGetPerformanceState(self, handle: object) -> int:  # noqa: N802
        state = super().nvmlDeviceGetPerformanceState(handle)
        return self.NVML_PSTATE_UNKNOWN if handle is self.devices[1] else state


@pytest.fixture
def sim(clock) -> CountingNvml:
    # 1_700_000_000 + k: the sim's clock moves only with the test's clock
    return CountingNvml(GPUS, host="testhost", clock=clock.wall, monotonic=clock.monotonic)


@pytest.fixture
def reader(sim, clock) -> GpuReader:
    gpu_reader = GpuReader(sim, monotonic=clock.monotonic)
    gpu_reader.start()
    return gpu_reader


def complete(gpu: GpuReading) -> bool:
    """Return whether a GPU reading has no error and every metric but the fan."""
    return gpu.error is None and all(
        getattr(gpu, name) is not None for name in CORE_METRIC_NAMES if name != "fan_pct"
    )


def warnings_about(caplog, *words: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.WARNING and all(w in r.getMessage() for w in words)
    ]


# -- a healthy host -----------------------------------------------------------------------------


def test_every_gpu_is_read_with_identity_and_every_metric(reader, sim):
    tick = reader.read()

    assert tick.error is None
    assert tick.driver_version == "550.127.05-simulated"
    assert [gpu.index for gpu in tick.gpus] == [0, 1, 2, 3]
    for gpu, device in zip(tick.gpus, sim.devices, strict=True):
        assert gpu.uuid == device.uuid and gpu.uuid.startswith("GPU-")
        assert gpu.name == device.model.name
        assert gpu.pci_bus_id == device.pci_bus_id
        assert complete(gpu), gpu


def test_metrics_are_converted_to_the_units_in_their_names(reader, sim):
    tick = reader.read()

    for gpu, handle in zip(tick.gpus, sim.devices, strict=True):
        # the raw NVML values at the same instant of the same simulated clock
        util = sim.nvmlDeviceGetUtilizationRates(handle)
        memory = sim.nvmlDeviceGetMemoryInfo(handle, version=sim.nvmlMemory_v2)
        assert gpu.util_gpu_pct == util.gpu
        assert gpu.util_mem_pct == util.memory
        assert gpu.mem_used_bytes == memory.used
        assert gpu.mem_total_bytes == memory.total == handle.model.mem_total_bytes
        assert gpu.temp_c == sim.nvmlDeviceGetTemperature(handle, sim.NVML_TEMPERATURE_GPU)
        assert gpu.power_w == sim.nvmlDeviceGetPowerUsage(handle) / 1000  # mW -> W
        assert gpu.power_limit_w == handle.model.power_limit_mw / 1000
        assert gpu.energy_j == sim.nvmlDeviceGetTotalEnergyConsumption(handle) / 1000  # mJ -> J
        assert gpu.sm_clock_mhz == sim.nvmlDeviceGetClockInfo(handle, sim.NVML_CLOCK_SM)
        assert gpu.mem_clock_mhz == sim.nvmlDeviceGetClockInfo(handle, sim.NVML_CLOCK_MEM)
        assert gpu.pstate == sim.nvmlDeviceGetPerformanceState(handle)
        assert isinstance(gpu.power_w, float)
        assert 0 <= gpu.util_gpu_pct <= 100
        assert gpu.mem_total_bytes > 0


def test_memory_comes_from_the_v2_struct_with_free_and_reserved(reader, sim):
    gpu = reader.read().gpus[1]  # the H100: 1 GiB reserved by the driver
    handle = sim.devices[1]

    v1 = sim.nvmlDeviceGetMemoryInfo(handle)
    v2 = sim.nvmlDeviceGetMemoryInfo(handle, version=sim.nvmlMemory_v2)
    assert v1.used == v2.used + v2.reserved  # v1 counts the reserved memory as used
    assert gpu.mem_used_bytes == v2.used
    assert gpu.mem_reserved_bytes == v2.reserved == 1024 * 2**20
    assert gpu.mem_free_bytes == v2.free == v1.free
    total = gpu.mem_reserved_bytes + gpu.mem_used_bytes + gpu.mem_free_bytes
    assert gpu.mem_total_bytes == total == 81_559 * 2**20


def test_memory_not_supported_for_a_while_comes_back_from_the_v2_struct(reader, sim):
    sim.fail_metric(2, "nvmlDeviceGetMemoryInfo")
    gpu = reader.read().gpus[2]
    assert (gpu.mem_used_bytes, gpu.mem_total_bytes) == (None, None)

    sim.restore()
    gpu = reader.read().gpus[2]

    v2 = sim.nvmlDeviceGetMemoryInfo(sim.devices[2], version=sim.nvmlMemory_v2)
    assert gpu.mem_used_bytes == v2.used  # not the v1 figure, which includes reserved memory
    assert gpu.mem_reserved_bytes == v2.reserved


def test_a_driver_without_the_v2_struct_is_read_through_v1_and_not_asked_again(clock):
    sim = V1OnlyNvml(2, host="testhost", clock=clock.wall)
    gpu_reader = GpuReader(sim, monotonic=clock.monotonic)
    gpu_reader.start()

    readings = [gpu_reader.read() for _ in range(5)]

    for tick in readings:
        for gpu, handle in zip(tick.gpus, sim.devices, strict=True):
            v1 = sim.nvmlDeviceGetMemoryInfo(handle)
            assert gpu.mem_used_bytes == v1.used
            assert gpu.mem_free_bytes == v1.free
            assert gpu.mem_reserved_bytes is None  # v1 cannot tell it
            assert gpu.mem_total_bytes == handle.model.mem_total_bytes
    assert sim.v2_calls == 2  # once per GPU, then v1 only


def test_passively_cooled_gpus_have_no_fan_but_the_geforce_has(reader):
    geforce, h100, a100, l40s = reader.read().gpus

    assert "GeForce" in geforce.name
    assert isinstance(geforce.fan_pct, int) and 0 <= geforce.fan_pct <= 100
    assert h100.fan_pct is None and a100.fan_pct is None and l40s.fan_pct is None


def test_energy_is_a_growing_counter_in_joules(reader, clock):
    first = reader.read().gpus[1].energy_j
    clock.advance(10.0)
    second = reader.read().gpus[1]

    # ten seconds at power_w watts adds about 10 * power_w joules
    assert second.energy_j - first == pytest.approx(10 * second.power_w, rel=0.05)


# -- one metric not supported ---------------------------------------------------------------


def test_a_metric_not_supported_is_null_and_logged_once_over_many_ticks(reader, sim, clock, caplog):
    sim.fail_metric(1, "nvmlDeviceGetPowerUsage")
    caplog.set_level(logging.INFO)

    ticks = []
    for _ in range(50):
        ticks.append(reader.read())
        clock.advance(1.0)

    h100_uuid = sim.devices[1].uuid
    assert all(tick.gpus[1].power_w is None for tick in ticks)
    assert all(tick.gpus[1].power_limit_w is not None for tick in ticks)  # the rest stays
    assert all(tick.gpus[1].error is None for tick in ticks)
    assert all(tick.gpus[0].power_w is not None for tick in ticks)  # other GPUs unaffected
    assert len(warnings_about(caplog, h100_uuid, "power_w")) == 1
    # the fan of each passive GPU is logged once too, not 50 times
    for index in (1, 2, 3):
        assert len(warnings_about(caplog, sim.devices[index].uuid, "fan_pct")) == 1
    assert not warnings_about(caplog, sim.devices[0].uuid)


def test_an_unsupported_metric_comes_back_when_supported_again(reader, sim):
    sim.fail_metric(2, "nvmlDeviceGetTemperature")
    assert reader.read().gpus[2].temp_c is None

    sim.restore()

    assert reader.read().gpus[2].temp_c is not None


def test_utilization_not_supported_nulls_both_utilization_metrics(reader, sim):
    sim.fail_metric(0, "nvmlDeviceGetUtilizationRates")

    gpu = reader.read().gpus[0]

    assert gpu.util_gpu_pct is None and gpu.util_mem_pct is None
    assert gpu.mem_used_bytes is not None and gpu.temp_c is not None


def test_pstate_unknown_is_null_not_32(clock):
    sim = UnknownPstateNvml(3, host="testhost", clock=clock.wall)
    gpu_reader = GpuReader(sim, monotonic=clock.monotonic)
    gpu_reader.start()

    gpus = gpu_reader.read().gpus

    assert gpus[1].pstate is None
    assert gpus[0].pstate in (0, 8) and gpus[2].pstate in (0, 8)
    assert complete(gpus[0])


# -- a lost GPU -----------------------------------------------------------------------------------


def test_a_lost_gpu_carries_an_error_and_the_others_are_complete(reader, sim, caplog):
    reader.read()  # every GPU known
    sim.lose_gpu(2)
    caplog.set_level(logging.INFO)

    ticks = [reader.read() for _ in range(10)]

    for tick in ticks:
        lost = tick.gpus[2]
        assert (lost.index, lost.uuid, lost.name) == (2, sim.devices[2].uuid, sim.devices[2].name)
        assert "lost" in lost.error.lower()
        assert all(value is None for value in lost.metric_values())
        assert all(complete(tick.gpus[i]) for i in (0, 1, 3))
        assert tick.error is None
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1


def test_a_lost_gpu_that_comes_back_is_read_again(reader, sim):
    reader.read()
    sim.lose_gpu(0)
    assert reader.read().gpus[0].error is not None

    sim.restore()

    assert complete(reader.read().gpus[0])


IDENTITY_CALLS = frozenset(
    {"nvmlDeviceGetHandleByIndex", "nvmlDeviceGetPciInfo", "nvmlDeviceGetUUID", "nvmlDeviceGetName"}
)


def assert_in_error(gpu: GpuReading) -> None:
    assert gpu.error is not None and "lost" in gpu.error.lower()
    assert all(value is None for value in gpu.metric_values())
    assert (gpu.mem_free_bytes, gpu.mem_reserved_bytes, gpu.processes) == (None, None, None)


def test_a_gpu_lost_before_it_was_ever_identified_is_in_every_tick_in_error(clock, caplog):
    # as PCW_SIM_LOST_GPUS has it: NVML still gives the handle and the PCI bus id, no UUID
    sim = SimulatedNvml(GPUS, host="testhost", clock=clock.wall, lost_gpus=(1,))
    gpu_reader = started(sim, clock)
    caplog.set_level(logging.INFO)

    ticks = [gpu_reader.read() for _ in range(5)]

    for tick in ticks:
        assert [gpu.index for gpu in tick.gpus] == [0, 1, 2, 3]
        lost = tick.gpus[1]
        assert_in_error(lost)
        assert lost.pci_bus_id == sim.devices[1].pci_bus_id
        assert lost.uuid != sim.devices[1].uuid and lost.uuid.startswith("unread-")
        assert lost.name == ""  # NVML gives no name: none is made up
        assert all(complete(tick.gpus[i]) for i in (0, 2, 3))
        assert tick.error is None
        assert build_tick(tick, "testhost", "0123456789abcdef", 0, 1.0, 60.0).gpus[1] == lost
    assert len({tick.gpus[1].uuid for tick in ticks}) == 1
    assert len([r for r in caplog.records if r.levelno == logging.ERROR]) == 1

    sim.restore()
    back = gpu_reader.read().gpus[1]
    assert back.uuid == sim.devices[1].uuid and complete(back)


def test_the_key_of_a_gpu_without_a_uuid_is_the_same_at_each_start_and_differs_per_host(clock):
    def key(host: str, lost_gpus: tuple[int, ...] = (1,), gpus: int = GPUS) -> str:
        sim = SimulatedNvml(gpus, host=host, clock=clock.wall, lost_gpus=lost_gpus)
        return started(sim, clock, host=host).read().gpus[1].uuid

    assert key("testhost") == key("testhost")
    assert key("testhost") != key("otherhost")
    # derived from the PCI bus id, not the index alone: GPU 1 keeps its key, GPU 2 has another
    assert key("testhost", lost_gpus=(1, 2)) == key("testhost")
    sim = SimulatedNvml(GPUS, host="testhost", clock=clock.wall, lost_gpus=(1, 2))
    tick = started(sim, clock).read()
    assert tick.gpus[1].uuid != tick.gpus[2].uuid


def test_a_gpu_without_even_a_handle_is_keyed_by_host_and_index(sim, clock):
    sim.lose_gpu(1)  # every call fails, the handle too: only the index is known
    tick = started(sim, clock).read()

    lost = tick.gpus[1]
    assert_in_error(lost)
    assert (lost.index, lost.pci_bus_id, lost.name) == (1, None, "")
    assert lost.uuid.startswith("unread-")
    assert lost.uuid == started(sim, clock).read().gpus[1].uuid
    assert lost.uuid != started(sim, clock, host="otherhost").read().gpus[1].uuid


def test_a_gpu_lost_before_it_was_identified_keeps_the_uuid_and_name_nvml_still_gives(sim, clock):
    sim.lose_gpu(1, still_answers=IDENTITY_CALLS)
    tick = started(sim, clock).read()

    lost = tick.gpus[1]
    assert_in_error(lost)
    device = sim.devices[1]
    assert (lost.uuid, lost.name, lost.pci_bus_id) == (device.uuid, device.name, device.pci_bus_id)


def test_a_gpu_never_identified_stays_in_the_ticks_when_the_session_is_lost(clock):
    sim = SimulatedNvml(GPUS, host="testhost", clock=clock.wall, lost_gpus=(1,))
    gpu_reader = started(sim, clock)
    before = gpu_reader.read()
    sim.fail_init(NVMLError_Uninitialized)

    tick = gpu_reader.read()

    assert tick.error is not None
    assert [gpu.uuid for gpu in tick.gpus] == [gpu.uuid for gpu in before.gpus]


# -- NVML unavailable or failing as a whole -------------------------------------------------------


@pytest.mark.parametrize("error", [NVMLError_LibraryNotFound, NVMLError_DriverNotLoaded])
def test_no_nvml_at_start_is_unavailable(sim, clock, error):
    sim.fail_init(error)
    gpu_reader = GpuReader(sim, monotonic=clock.monotonic)

    with pytest.raises(NvmlUnavailableError) as caught:
        gpu_reader.start()

    assert str(error()) in str(caught.value)


def test_a_session_lost_mid_run_marks_known_gpus_and_retries_with_backoff(reader, sim, clock):
    known = reader.read()
    attempts_before = len(sim.init_attempts)
    sim.fail_init(NVMLError_Uninitialized)  # the driver drops the session

    lost_at = clock.monotonic()
    tick = reader.read()

    assert tick.error is not None and "Uninitialized" in tick.error
    assert [g.uuid for g in tick.gpus] == [g.uuid for g in known.gpus]
    assert all(g.error == tick.error for g in tick.gpus)
    assert all(g.metric_values() == (None,) * len(METRIC_NAMES) for g in tick.gpus)

    # tick every 0.25 s for a minute: re-init is tried only when each backoff has passed
    for _ in range(240):
        clock.advance(0.25)
        tick = reader.read()
        assert tick.error is not None and len(tick.gpus) == GPUS
    attempts = [t - lost_at for t in sim.init_attempts[attempts_before:]]
    expected, at = [], 0.0
    for delay_s in REINIT_BACKOFF_S:
        at += delay_s
        if at <= 60.0:
            expected.append(at)
    assert attempts == pytest.approx(expected, abs=0.25 + 1e-9)
    assert expected == [1.0, 3.0, 8.0, 18.0, 48.0]  # the documented backoff, in seconds

    sim.restore()
    clock.advance(REINIT_BACKOFF_S[-1])
    recovered = reader.read()
    assert recovered.error is None
    assert all(complete(g) for g in recovered.gpus)


def test_a_second_outage_is_logged_like_the_first(reader, sim, clock, caplog):
    reader.read()
    caplog.set_level(logging.INFO)

    for _ in range(2):
        sim.fail_init(NVMLError_Uninitialized)
        assert reader.read().error is not None
        sim.restore()
        clock.advance(REINIT_BACKOFF_S[0])
        assert reader.read().error is None

    lost = [
        r for r in caplog.records if r.levelno >= logging.ERROR and "session lost" in r.getMessage()
    ]
    reopened = [r for r in caplog.records if "re-opened" in r.getMessage()]
    assert len(lost) == 2
    assert len(reopened) == 2


def test_init_failing_at_start_for_another_reason_retries_instead_of_giving_up(sim, clock):
    sim.fail_init(NVMLError_Uninitialized)
    gpu_reader = GpuReader(sim, monotonic=clock.monotonic)

    gpu_reader.start()  # not fatal: the driver may come back
    first = gpu_reader.read()
    sim.restore()
    clock.advance(REINIT_BACKOFF_S[0])
    second = gpu_reader.read()

    assert first.error is not None and first.gpus == []  # no GPU known yet: none invented
    assert second.error is None and len(second.gpus) == GPUS


def test_close_ends_the_session(reader, sim):
    reader.read()

    reader.close()

    with pytest.raises(sim.NVMLError_Uninitialized):
        sim.nvmlDeviceGetCount()


# -- building the tick message --------------------------------------------------------------------


def test_build_tick_carries_every_gpu_with_one_timestamp(reader):
    reading = reader.read()

    tick = build_tick(reading, "testhost", "abc", 7, 1_700_000_060.0, 60.0)

    assert (tick.host, tick.sampler_id, tick.seq, tick.ts, tick.interval_s) == (
        "testhost",
        "abc",
        7,
        1_700_000_060.0,
        60.0,
    )
    assert tick.gpus == reading.gpus
    assert Tick.from_frames(tick.to_frames()) == tick


def test_build_tick_turns_an_out_of_range_metric_into_null_and_keeps_the_rest(reader, caplog):
    reading = reader.read()
    good = reading.gpus[1]
    bad = GpuReading(
        **{
            **{f: getattr(good, f) for f in good.__struct_fields__},
            "temp_c": 4000,
            "pstate": 16,
            "power_w": float("nan"),
            "mem_used_bytes": -1,
        }
    )
    reading = type(reading)(reading.driver_version, [reading.gpus[0], bad], None)

    tick = build_tick(reading, "testhost", "abc", 0, 1_700_000_060.0, 60.0)

    fixed = tick.gpus[1]
    assert (fixed.temp_c, fixed.pstate, fixed.power_w, fixed.mem_used_bytes) == (None,) * 4
    for name in CORE_METRIC_NAMES:
        if name not in ("temp_c", "pstate", "power_w", "mem_used_bytes"):
            assert getattr(fixed, name) == getattr(good, name), name
    assert tick.gpus[0] == reading.gpus[0]
    # and the writer accepts it
    assert Tick.from_frames(tick.to_frames()) == tick
    assert any("temp_c" in r.getMessage() for r in caplog.records)


def test_a_metric_stuck_out_of_range_is_logged_once_a_minute_not_every_tick(
    reader, caplog, monkeypatch
):
    now_s = [0.0]
    monkeypatch.setattr(
        ticks, "_OUT_OF_RANGE", ThrottledLog(ticks.log, 60.0, clock=lambda: now_s[0])
    )
    reading = reader.read()
    stuck = msgspec.structs.replace(reading.gpus[0], temp_c=4000)
    reading = type(reading)(reading.driver_version, [stuck], None)

    def lines() -> int:
        return sum("out of range" in r.getMessage() for r in caplog.records)

    with caplog.at_level(logging.WARNING, logger="services.sampler.ticks"):
        for seq in range(30):  # 30 ticks of 1 s
            assert (
                build_tick(reading, "testhost", "abc", seq, 1.0 + seq, 1.0).gpus[0].temp_c is None
            )
            now_s[0] += 1.0
        assert lines() == 1
        now_s[0] += 30.0
        build_tick(reading, "testhost", "abc", 30, 61.0, 1.0)
        assert lines() == 2
