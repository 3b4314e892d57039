"""The reader's health fields over SimulatedNvml: each case as a GPU shows it, N/A as null."""

from __future__ import annotations

import logging
import threading

import pytest

from common.messages import GpuHealth, GpuLimits, GpuReading
from services.sampler.health_reads import SLOW_READ_S
from services.sampler.nvml import GpuReader, TickReading
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from tests.conftest import started

# Simulated models by index: 0 GeForce RTX 4090, 1 H100 (NVLink, HBM), 2 A100 (NVLink, HBM),
# 3 L40S.
GPUS = 4
ALL_ONES_64 = 2**64 - 1


def sim(clock, **scenarios) -> SimulatedNvml:
    return SimulatedNvml(GPUS, host="testhost", clock=clock.wall, **scenarios)


def health_of(reader: GpuReader, index: int) -> GpuHealth:
    health = reader.read().gpus[index].health
    assert health is not None
    return health


def test_each_model_reports_what_it_has_and_null_for_what_it_lacks(clock):
    reader = started(sim(clock), clock)

    geforce, h100, a100, l40s = reader.read().gpus

    assert h100.limits is not None and h100.health is not None
    assert (h100.limits.pcie_max_gen, h100.limits.pcie_max_width) == (5, 16)
    assert (h100.limits.max_sm_clock_mhz, h100.limits.max_mem_clock_mhz) == (1980, 2619)
    assert h100.limits.power_limit_max_w == 700.0
    assert h100.limits.nvlink_links == 18 and h100.health.nvlink_links_active == 18
    assert h100.limits.ecc_enabled is True
    assert h100.health.mem_temp_c is not None and h100.health.ecc_uncorrected_volatile == 0
    assert a100.limits is not None and a100.limits.nvlink_links == 12
    # the GeForce card has no ECC, no NVLink, no memory sensor: null, never 0
    assert geforce.health is not None and geforce.limits is not None
    assert geforce.limits.ecc_enabled is None and geforce.limits.nvlink_links is None
    assert geforce.health.ecc_corrected_volatile is None
    assert geforce.health.remapped_rows_uncorrectable is None
    assert geforce.health.nvlink_links_active is None and geforce.health.mem_temp_c is None
    assert l40s.health is not None and l40s.health.mem_temp_c is None
    assert reader.read().gpus[1].limits == h100.limits  # read once, sent with every tick


def test_a_gpu_with_rows_pending_remap_says_so_with_its_uncorrected_errors(clock):
    reader = started(sim(clock, remap_gpus=(2,)), clock)

    health = health_of(reader, 2)

    assert health.remap_pending is True and health.remap_failure is False
    assert health.remapped_rows_uncorrectable == 2
    assert health.ecc_uncorrected_volatile == 2
    assert health_of(reader, 1).remap_pending is False


def test_a_link_trained_down_reads_x8_of_x16(clock):
    reader = started(sim(clock, degraded_link_gpus=(3,)), clock)

    tick = reader.read()

    assert tick.gpus[3].health.pcie_link_width == 8
    assert tick.gpus[3].limits.pcie_max_width == 16
    assert tick.gpus[1].health.pcie_link_width == 16


def test_a_hot_gpu_under_load_reports_thermal_slowdown_and_counts_its_time(clock):
    reader = started(sim(clock, hot_gpus=(1,)), clock)
    thermal = 0x20 | 0x40
    readings = []
    for _ in range(600):  # ten minutes in 1 s steps: a training phase comes
        clock.advance(1.0)
        readings.append(reader.read().gpus[1])
    hot = [g for g in readings if g.health.clocks_event_reasons & thermal]

    assert hot, "the hot GPU never throttled for heat"
    assert all(g.temp_c >= g.limits.temp_max_operating_c for g in hot)
    assert readings[-1].health.thermal_violation_ns > readings[0].health.thermal_violation_ns
    violations = [g.health.thermal_violation_ns for g in readings]
    assert violations == sorted(violations)  # a counter never goes down


def test_an_xid_is_in_one_tick_only_with_its_code(clock):
    nvml = sim(clock)
    reader = started(nvml, clock)
    reader.read()
    clock.advance(1.0)

    nvml.inject_xid(1, 79)
    first, second = reader.read(), reader.read()

    [xid] = first.gpus[1].xid_events
    assert xid.code == 79 and xid.gpu_instance_id is None
    assert xid.ts == clock.wall()  # when the sampler read it, on its wall clock
    assert all(not gpu.xid_events for gpu in second.gpus)
    assert not any(gpu.xid_events for gpu in (first.gpus[0], first.gpus[2], first.gpus[3]))


def test_an_xid_gpu_reports_its_xid_in_the_first_tick(clock):
    reader = started(sim(clock, xid_gpus=(0,)), clock)

    tick = reader.read()

    assert [xid.code for xid in tick.gpus[0].xid_events] == [13]


def test_many_xids_at_once_are_taken_over_several_ticks_not_lost(clock):
    nvml = sim(clock)
    reader = started(nvml, clock)
    reader.read()
    for _ in range(100):
        nvml.inject_xid(1, 48)

    counts = [len(reader.read().gpus[1].xid_events) for _ in range(3)]

    assert counts == [64, 36, 0]


def test_an_older_driver_without_a_call_gives_null_logged_once_and_the_rest(clock, caplog):
    nvml = sim(clock)
    nvml.remove_function("nvmlDeviceGetCurrentClocksEventReasons")
    nvml.remove_function("nvmlDeviceGetCurrentClocksThrottleReasons")
    nvml.remove_function("nvmlDeviceGetFieldValues")
    reader = started(nvml, clock)
    caplog.set_level(logging.INFO)

    healths = [health_of(reader, 1) for _ in range(3)]

    assert all(h.clocks_event_reasons is None and h.ecc_corrected_volatile is None for h in healths)
    assert all(h.pcie_link_gen is not None for h in healths)
    lines = [r.getMessage() for r in caplog.records if "clock-event reasons" in r.getMessage()]
    assert len(lines) == GPUS  # once per GPU, not once per tick
    assert all("Function Not Found" in line for line in lines)
    assert all(
        r.levelno == logging.WARNING for r in caplog.records if "Function Not Found" in r.message
    )


def test_a_call_a_gpu_does_not_support_is_null_and_logged_at_info_not_as_a_warning(clock, caplog):
    caplog.set_level(logging.INFO)
    reader = started(sim(clock), clock)

    geforce = reader.read().gpus[0]

    assert geforce.limits.ecc_enabled is None
    lines = [r for r in caplog.records if "ECC mode" in r.getMessage()]
    assert [r.levelno for r in lines] == [logging.INFO]


class AllOnesFieldsNvml(SimulatedNvml):
    """SimulatedNvml whose field values are NVML_VALUE_NOT_AVAILABLE (all ones) in every entry."""

    def nvmlDeviceGetFieldValues(self, handle, field_ids):  # noqa: N802 (pynvml's name)
        answers = super().nvmlDeviceGetFieldValues(handle, field_ids)
        for answer in answers:
            if answer.nvmlReturn == self.NVML_SUCCESS:
                answer.valueType = self.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                answer.value.ullVal = ALL_ONES_64
        return answers


def test_a_counter_nvml_cannot_tell_is_null_not_huge(clock):
    reader = started(AllOnesFieldsNvml(GPUS, clock=clock.wall, remap_gpus=(2,)), clock)

    health = health_of(reader, 2)

    assert health.ecc_uncorrected_volatile is None and health.remapped_rows_uncorrectable is None
    assert health.remap_pending is None and health.pcie_replays is None
    assert health.nvlink_tx_kib is None and health.nvlink_links_active is None


class BlockingPcieNvml(SimulatedNvml):
    """SimulatedNvml whose PCIe throughput blocks until another such call runs beside it (or 2 s),
    as the real call blocks 20 ms: it records how many ran at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.in_flight = 0
        self.most_at_once = 0
        self._guard = threading.Condition()

    def nvmlDeviceGetPcieThroughput(self, handle, counter):  # noqa: N802
        with self._guard:
            self.in_flight += 1
            self.most_at_once = max(self.most_at_once, self.in_flight)
            self._guard.notify_all()
            self._guard.wait_for(lambda: self.most_at_once > 1, timeout=2.0)
        try:
            return super().nvmlDeviceGetPcieThroughput(handle, counter)
        finally:
            with self._guard:
                self.in_flight -= 1


def test_pcie_throughput_of_every_gpu_is_read_at_once_not_one_after_another(clock):
    nvml = BlockingPcieNvml(GPUS, clock=clock.wall)
    reader = started(nvml, clock)

    tick = reader.read()

    assert nvml.most_at_once > 1
    assert all(gpu.health.pcie_rx_kb_per_s is not None for gpu in tick.gpus)
    assert all(gpu.health.pcie_tx_kb_per_s is not None for gpu in tick.gpus)
    reader.close()


def test_a_gpu_lost_while_its_pcie_is_read_is_in_error_the_next_tick(clock):
    nvml = sim(clock)
    reader = started(nvml, clock)
    reader.read()
    nvml.fail_metric(2, "nvmlDeviceGetPcieThroughput")
    clock.advance(SLOW_READ_S)  # the throughput is read again

    tick = reader.read()
    nvml.lose_gpu(2)
    after = reader.read()

    assert tick.gpus[2].error is None and tick.gpus[2].health.pcie_tx_kb_per_s is None
    assert after.gpus[2].error is not None and after.gpus[1].error is None


@pytest.mark.parametrize("scenario", ["hot_gpus", "remap_gpus", "degraded_link_gpus", "xid_gpus"])
def test_every_health_value_passes_the_codec(clock, scenario):
    reader = started(sim(clock, **{scenario: (0, 1, 2, 3)}), clock)
    clock.advance(400.0)

    tick = build_tick(reader.read(), "testhost", "run", 0, clock.wall(), 1.0)

    assert all(gpu.health is not None and gpu.limits is not None for gpu in tick.gpus)
    assert tick.cuda_version == "12.4"


def test_the_slow_reads_happen_at_most_every_slow_read_s_and_the_ticks_between_carry_them(
    clock, monkeypatch
):
    nvml = sim(clock)
    reader = started(nvml, clock)
    calls = []
    field_values = nvml.nvmlDeviceGetFieldValues
    monkeypatch.setattr(
        nvml, "nvmlDeviceGetFieldValues", lambda *a: calls.append(a) or field_values(*a)
    )

    first = reader.read()
    for _ in range(int(SLOW_READ_S * 10) - 1):  # ticks every 0.1 s, short of SLOW_READ_S
        clock.advance(0.1)
        between = reader.read()
    assert len(calls) == GPUS  # one field-values call per GPU, in the first tick only
    assert (
        between.gpus[1].health.ecc_corrected_aggregate
        == first.gpus[1].health.ecc_corrected_aggregate
    )
    assert between.gpus[1].health.pcie_rx_kb_per_s == first.gpus[1].health.pcie_rx_kb_per_s

    clock.advance(0.1)
    reader.read()
    assert len(calls) == 2 * GPUS  # SLOW_READ_S after the first: read again


def test_xid_79_is_reported_by_the_tick_that_finds_the_gpu_fallen_off_the_bus(clock):
    nvml = sim(clock)
    reader = started(nvml, clock)
    reader.read()
    clock.advance(1.0)

    nvml.inject_xid(1, 79)
    nvml.lose_gpu(1)  # every device call fails from now on; the event is still queued
    tick = reader.read()

    lost = tick.gpus[1]
    assert lost.error is not None
    assert [xid.code for xid in lost.xid_events] == [79]


def test_xids_read_in_one_instant_keep_a_time_each(clock):
    nvml = sim(clock)
    reader = started(nvml, clock)
    reader.read()
    for _ in range(5):
        nvml.inject_xid(1, 13)

    xids = reader.read().gpus[1].xid_events

    assert [xid.code for xid in xids] == [13] * 5
    assert len({xid.ts for xid in xids}) == 5  # stored as five rows, not one


def test_a_health_value_out_of_range_is_null_alone_and_the_rest_of_the_health_stays():
    health = GpuHealth(clocks_event_reasons=0x40, ecc_uncorrected_volatile=3, mem_temp_c=4000)
    limits = GpuLimits(pcie_max_gen=5, temp_shutdown_c=65535)  # a stuck sensor, a bad threshold
    gpu = GpuReading(index=0, uuid="GPU-a", name="H100", health=health, limits=limits)

    [sent] = build_tick(TickReading("550", [gpu], None), "h", "s", 1, 1.7e9, 1.0).gpus

    assert sent.health.mem_temp_c is None and sent.limits.temp_shutdown_c is None
    assert sent.health.clocks_event_reasons == 0x40  # the throttling is still told
    assert sent.health.ecc_uncorrected_volatile == 3 and sent.limits.pcie_max_gen == 5


def test_a_pcie_throughput_nvml_cannot_tell_is_null_not_four_billion(clock):
    nvml = sim(clock)
    nvml.report_not_available(0, "nvmlDeviceGetPcieThroughput")
    reader = started(nvml, clock)

    health = health_of(reader, 0)

    assert (health.pcie_tx_kb_per_s, health.pcie_rx_kb_per_s) == (None, None)
    assert health_of(reader, 1).pcie_rx_kb_per_s is not None  # the others are read
