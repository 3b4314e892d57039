"""The simulated GPUs' health calls: what a user of the pynvml stand-in sees, on a fake clock."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

from services.sampler.simulated_nvml import MODELS, SimulatedNvml

if TYPE_CHECKING:
    from tests.conftest import FakeClock

# Simulated models by index: 0 GeForce RTX 4090, 1 H100, 2 A100, 3 L40S (MODELS' rotation).
GPUS = 4
HOUR_S = 3600.0
ALL_LINKS = 0xFFFFFFFF
SM = SimulatedNvml.NVML_CLOCK_SM
POWER_CAP = SimulatedNvml.nvmlClocksEventReasonSwPowerCap
SW_THERMAL = SimulatedNvml.nvmlClocksEventReasonSwThermalSlowdown
HW_THERMAL = SimulatedNvml.nvmlClocksEventReasonHwThermalSlowdown
IDLE = SimulatedNvml.nvmlClocksEventReasonGpuIdle
THRESHOLD = {
    "shutdown": SimulatedNvml.NVML_TEMPERATURE_THRESHOLD_SHUTDOWN,
    "slowdown": SimulatedNvml.NVML_TEMPERATURE_THRESHOLD_SLOWDOWN,
    "gpu max": SimulatedNvml.NVML_TEMPERATURE_THRESHOLD_GPU_MAX,
    "mem max": SimulatedNvml.NVML_TEMPERATURE_THRESHOLD_MEM_MAX,
}


def started(clock: FakeClock, gpus: int = GPUS, **options: Any) -> SimulatedNvml:
    """Return an initialised simulation over the fake clock."""
    sim = SimulatedNvml(gpus, host="health", clock=clock.wall, **options)
    sim.nvmlInit()
    return sim


def instants(clock: FakeClock, span_s: float, step_s: float) -> Iterator[float]:
    """Move the fake clock through span_s in steps, yielding the seconds elapsed at each."""
    elapsed = 0.0
    while elapsed < span_s:
        yield elapsed
        clock.advance(step_s)
        elapsed += step_s


def advance_until(
    clock: FakeClock, condition: Callable[[], bool], limit_s: float = 2 * HOUR_S
) -> None:
    """Advance the fake clock second by second until condition holds (fail after limit_s)."""
    for _ in instants(clock, limit_s, 1.0):
        if condition():
            return
    pytest.fail(f"not within {limit_s} s of simulated time")


def thermal_violation_ns(sim: SimulatedNvml, index: int) -> int:
    status = sim.nvmlDeviceGetViolationStatus(sim.devices[index], sim.NVML_PERF_POLICY_THERMAL)
    return status.violationTime


def threshold(sim: SimulatedNvml, index: int, name: str) -> int:
    return sim.nvmlDeviceGetTemperatureThreshold(sim.devices[index], THRESHOLD[name])


# -- clocks, temperature and power -----------------------------------------------------------


def test_a_hot_gpu_under_load_slows_down_for_heat_and_counts_the_time(clock):
    sim = started(clock, hot_gpus=(1,))
    hot, cool = sim.devices[1], sim.devices[2]

    def held_down_for_heat() -> bool:  # now and for each of the next 5 s
        reasons = []
        for _ in range(6):
            reasons.append(sim.nvmlDeviceGetCurrentClocksEventReasons(hot))
            clock.step_wall(1.0)
        clock.step_wall(-6.0)
        return all(r & SW_THERMAL for r in reasons)

    advance_until(clock, held_down_for_heat)
    hot_before, cool_before = thermal_violation_ns(sim, 1), thermal_violation_ns(sim, 2)
    reasons = sim.nvmlDeviceGetCurrentClocksEventReasons(hot)
    clock.advance(5)

    assert thermal_violation_ns(sim, 1) - hot_before == 5_000_000_000  # 5 s held down
    assert thermal_violation_ns(sim, 2) == cool_before
    assert not reasons & sim.nvmlClocksEventReasonGpuIdle
    assert sim.nvmlDeviceGetCurrentClocksEventReasons(cool) & (SW_THERMAL | HW_THERMAL) == 0


def test_thermal_reasons_match_the_temperature_and_the_clock_reported(clock):
    sim = started(clock, hot_gpus=(0, 1, 2, 3))
    seen = set()

    for _ in instants(clock, 2 * HOUR_S, 7.0):
        for device in sim.devices:
            i = device.index
            reasons = sim.nvmlDeviceGetCurrentClocksEventReasons(device)
            temp = sim.nvmlDeviceGetTemperature(device, sim.NVML_TEMPERATURE_GPU)
            sm = sim.nvmlDeviceGetClockInfo(device, SM)
            assert temp < threshold(sim, i, "shutdown")
            assert bool(reasons & HW_THERMAL) == (temp >= threshold(sim, i, "slowdown"))
            if temp > threshold(sim, i, "gpu max"):
                assert reasons & SW_THERMAL
            if reasons & HW_THERMAL:  # HW slowdown halves the clocks
                assert sm <= sim.nvmlDeviceGetMaxClockInfo(device, SM) // 2 + 1
            seen.update((i, bit) for bit in (SW_THERMAL, HW_THERMAL) if reasons & bit)

    assert seen == {(i, bit) for i in range(GPUS) for bit in (SW_THERMAL, HW_THERMAL)}


def test_cool_gpus_never_slow_down_for_heat(clock):
    sim = started(clock)

    for _ in instants(clock, 2 * HOUR_S, 11.0):
        for device in sim.devices:
            reasons = sim.nvmlDeviceGetCurrentClocksEventReasons(device)
            assert not reasons & (SW_THERMAL | HW_THERMAL)
            temp = sim.nvmlDeviceGetTemperature(device, sim.NVML_TEMPERATURE_GPU)
            assert temp <= threshold(sim, device.index, "gpu max")

    assert all(thermal_violation_ns(sim, i) == 0 for i in range(GPUS))


def test_power_never_exceeds_the_limit_and_the_power_cap_is_reported_at_it(clock):
    sim = started(clock, gpus=5, names=("", "", "", "", "Tesla V100-SXM2-32GB"))
    capped: set[int] = set()

    for _ in instants(clock, 2 * HOUR_S, 7.0):
        for device in sim.devices:
            power = sim.nvmlDeviceGetPowerUsage(device)
            limit = sim.nvmlDeviceGetEnforcedPowerLimit(device)
            at_cap = bool(sim.nvmlDeviceGetCurrentClocksEventReasons(device) & POWER_CAP)
            assert power <= limit
            assert at_cap == (power == limit)
            if at_cap:
                capped.add(device.index)
                assert sim.nvmlDeviceGetClockInfo(device, SM) < device.model.max_sm_clock_mhz

    assert capped == {0, 1, 2, 3, 4}  # every model reaches its limit at peak load
    before = [sim.nvmlDeviceGetViolationStatus(d, sim.NVML_PERF_POLICY_POWER) for d in sim.devices]
    clock.advance(HOUR_S)
    after = [sim.nvmlDeviceGetViolationStatus(d, sim.NVML_PERF_POLICY_POWER) for d in sim.devices]
    for old, new in zip(before, after, strict=True):
        assert 0 < new.violationTime - old.violationTime < HOUR_S * 1e9
        assert new.referenceTime - old.referenceTime == HOUR_S * 1e6  # µs


def test_an_idle_gpu_reports_gpu_idle_and_a_gen1_link(clock):
    sim = started(clock, idle_gpus=(1,))
    idle, busy = sim.devices[1], sim.devices[2]

    assert sim.nvmlDeviceGetCurrentClocksEventReasons(idle) == IDLE
    assert sim.nvmlDeviceGetCurrPcieLinkGeneration(idle) == 1
    assert sim.nvmlDeviceGetMaxPcieLinkGeneration(idle) == 5  # an H100
    assert sim.nvmlDeviceGetClockInfo(idle, SM) == 210
    # a training GPU drops to Gen1 in the idle part of its cycle and is back at Gen4 under load
    advance_until(clock, lambda: sim.nvmlDeviceGetUtilizationRates(busy).gpu > 50)
    assert sim.nvmlDeviceGetCurrPcieLinkGeneration(busy) == 4
    assert not sim.nvmlDeviceGetCurrentClocksEventReasons(busy) & IDLE
    advance_until(clock, lambda: sim.nvmlDeviceGetUtilizationRates(busy).gpu == 0)
    assert sim.nvmlDeviceGetCurrPcieLinkGeneration(busy) == 1
    assert sim.nvmlDeviceGetCurrentClocksEventReasons(busy) & IDLE


# -- PCIe --------------------------------------------------------------------------------------


def test_a_degraded_link_trains_at_x8_of_x16_and_replays_more(clock):
    sim = started(clock, degraded_link_gpus=(3,))
    degraded, healthy = sim.devices[3], sim.devices[2]
    first = [sim.nvmlDeviceGetPcieReplayCounter(d) for d in (degraded, healthy)]

    for _ in instants(clock, HOUR_S, 60.0):
        assert sim.nvmlDeviceGetCurrPcieLinkWidth(degraded) == 8
        assert sim.nvmlDeviceGetMaxPcieLinkWidth(degraded) == 16
        assert sim.nvmlDeviceGetCurrPcieLinkWidth(healthy) == 16

    degraded_replays = sim.nvmlDeviceGetPcieReplayCounter(degraded) - first[0]
    healthy_replays = sim.nvmlDeviceGetPcieReplayCounter(healthy) - first[1]
    assert degraded_replays > 10 * max(1, healthy_replays)


def test_pcie_throughput_follows_the_load_and_the_gpu_receives_more(clock):
    sim = started(clock)
    device = sim.devices[1]
    rx, tx = sim.NVML_PCIE_UTIL_RX_BYTES, sim.NVML_PCIE_UTIL_TX_BYTES

    advance_until(clock, lambda: sim.nvmlDeviceGetUtilizationRates(device).gpu > 70)
    busy_rx = sim.nvmlDeviceGetPcieThroughput(device, rx)
    assert 1_000_000 < busy_rx < 8_000_000  # KB/s: a few GB/s
    assert busy_rx > sim.nvmlDeviceGetPcieThroughput(device, tx) > 0
    advance_until(clock, lambda: sim.nvmlDeviceGetUtilizationRates(device).gpu == 0)
    assert sim.nvmlDeviceGetPcieThroughput(device, rx) < 1000


# -- memory errors -----------------------------------------------------------------------------


def ecc(sim: SimulatedNvml, index: int, error_type: int, counter_type: int) -> int:
    return sim.nvmlDeviceGetTotalEccErrors(sim.devices[index], error_type, counter_type)


def test_a_remap_gpu_reports_pending_rows_and_uncorrected_ecc(clock):
    sim = started(clock, remap_gpus=(2,))
    unc = sim.NVML_MEMORY_ERROR_TYPE_UNCORRECTED

    corrected, uncorrectable, pending, failure = sim.nvmlDeviceGetRemappedRows(sim.devices[2])
    assert corrected in (0, 1)  # a row remapped long ago, on some GPUs
    assert (uncorrectable, pending, failure) == (2, 1, 0)
    assert ecc(sim, 2, unc, sim.NVML_VOLATILE_ECC) == ecc(sim, 2, unc, sim.NVML_AGGREGATE_ECC) == 2
    for healthy in (1, 3):
        assert sim.nvmlDeviceGetRemappedRows(sim.devices[healthy])[1:] == (0, 0, 0)
        assert ecc(sim, healthy, unc, sim.NVML_AGGREGATE_ECC) == 0
    assert sim.nvmlDeviceGetEccMode(sim.devices[2]) == [sim.NVML_FEATURE_ENABLED] * 2


def test_the_geforce_has_no_ecc(clock):
    sim = started(clock)
    geforce = sim.devices[0]
    calls: list[Callable[[], object]] = [
        lambda: sim.nvmlDeviceGetEccMode(geforce),
        lambda: sim.nvmlDeviceGetTotalEccErrors(geforce, 0, sim.NVML_VOLATILE_ECC),
        lambda: sim.nvmlDeviceGetRemappedRows(geforce),
        lambda: sim.nvmlDeviceGetRetiredPages(geforce, 0),
        lambda: sim.nvmlDeviceGetRetiredPagesPendingStatus(geforce),
    ]

    for call in calls:
        with pytest.raises(sim.NVMLError_NotSupported):
            call()
    with pytest.raises(sim.NVMLError_NotSupported):
        threshold(sim, 0, "mem max")  # GDDR: no memory temperature
    assert sim.nvmlDeviceGetSupportedEventTypes(geforce) & sim.nvmlEventTypeSingleBitEccError == 0


def test_the_v100_is_chosen_by_name_and_retires_pages_instead_of_remapping_rows(clock):
    v100 = "Tesla V100-SXM2-32GB"
    sim = started(clock, gpus=2, names=(v100,), remap_gpus=(0,))
    device = sim.devices[0]
    sbe = sim.NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
    dbe = sim.NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR

    assert sim.nvmlDeviceGetName(device) == v100
    assert sim.nvmlDeviceGetEnforcedPowerLimit(device) == 300_000
    assert sim.nvmlDeviceGetMaxClockInfo(device, SM) == 1530
    assert sim.nvmlDeviceGetMaxClockInfo(device, sim.NVML_CLOCK_MEM) == 877
    assert sim.nvmlDeviceGetMemoryInfo(device).total == 32 << 30
    assert sim.nvmlDeviceGetMaxPcieLinkGeneration(device) == 3
    pages = sim.nvmlDeviceGetRetiredPages(device, dbe)
    assert len(pages) == 2 and all(isinstance(page, int) for page in pages)
    assert sim.nvmlDeviceGetRetiredPages(device, sbe) == sim.nvmlDeviceGetRetiredPages(device, sbe)
    assert sim.nvmlDeviceGetRetiredPagesPendingStatus(device) == 1
    with pytest.raises(sim.NVMLError_NotSupported):
        sim.nvmlDeviceGetRemappedRows(device)
    # Ampere and newer remap rows instead; the V100 is never in the default rotation
    with pytest.raises(sim.NVMLError_NotSupported):
        sim.nvmlDeviceGetRetiredPages(sim.devices[1], sbe)
    assert v100 not in {model.name for model in MODELS}
    assert v100 not in {d.name for d in started(clock, gpus=len(MODELS) * 2).devices}


# -- counters ----------------------------------------------------------------------------------


def test_counters_never_decrease_over_many_clock_steps(clock):
    sim = started(clock, hot_gpus=(1,), degraded_link_gpus=(2,), remap_gpus=(3,))
    corrected, volatile, aggregate = (
        sim.NVML_MEMORY_ERROR_TYPE_CORRECTED,
        sim.NVML_VOLATILE_ECC,
        sim.NVML_AGGREGATE_ECC,
    )
    nvlinks = [(sim.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, ALL_LINKS)]
    nvlinks.append((sim.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX, ALL_LINKS))

    def counters(index: int) -> list[int]:
        device = sim.devices[index]
        found = [
            sim.nvmlDeviceGetTotalEnergyConsumption(device),
            sim.nvmlDeviceGetViolationStatus(device, sim.NVML_PERF_POLICY_POWER).violationTime,
            thermal_violation_ns(sim, index),
            sim.nvmlDeviceGetPcieReplayCounter(device),
        ]
        if index != 0:  # the GeForce has no ECC
            found += [ecc(sim, index, corrected, volatile), ecc(sim, index, corrected, aggregate)]
            assert found[-2] <= found[-1]  # volatile (since the driver loaded) <= aggregate
        if index in (1, 2):  # NVLink on the H100 and A100
            found += [entry.value.ullVal for entry in sim.nvmlDeviceGetFieldValues(device, nvlinks)]
        return found

    first = last = [counters(i) for i in range(GPUS)]
    for step in range(1500):
        clock.advance((3.0, 61.0, 0.5, 17.0)[step % 4])
        if step == 700:
            clock.step_wall(-120.0)  # NTP steps the wall clock back: counters still never drop
        now = [counters(i) for i in range(GPUS)]
        for old, new in zip(last, now, strict=True):
            assert all(n >= o for o, n in zip(old, new, strict=True)), (old, new)
        last = now

    grown = sum(
        n > o for old, new in zip(first, last, strict=True) for o, n in zip(old, new, strict=True)
    )
    assert grown >= 12  # energy and power-cap time everywhere, heat, replays, ECC, NVLink


# -- field values ------------------------------------------------------------------------------


def test_field_values_answer_each_entry_in_order(clock):
    sim = started(clock)
    h100, l40s = sim.devices[1], sim.devices[3]
    tx, rx = sim.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, sim.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
    ids: list[Any] = [
        sim.NVML_FI_DEV_MEMORY_TEMP,
        (tx, ALL_LINKS),
        (rx, 0),
        (tx, 17),
        (tx, 18),  # the H100 has 18 links: no 19th
        (tx, sim.NVML_NVLINK_MAX_LINKS),  # no GPU has this one
        9999,
    ]
    sim.nvmlDeviceGetFieldValues(h100, ids)
    advance_until(clock, lambda: sim.nvmlDeviceGetUtilizationRates(h100).gpu > 50)
    clock.advance(60)

    answers = sim.nvmlDeviceGetFieldValues(h100, ids)

    assert [a.fieldId for a in answers] == [i if isinstance(i, int) else i[0] for i in ids]
    assert [a.scopeId for a in answers] == [0, ALL_LINKS, 0, 17, 18, 36, 0]
    ok, unsupported = sim.NVML_SUCCESS, sim.NVML_ERROR_NOT_SUPPORTED
    codes = [ok, ok, ok, ok, unsupported, sim.NVML_ERROR_INVALID_ARGUMENT, unsupported]
    assert [a.nvmlReturn for a in answers] == codes
    memory, total, link0_rx, link17 = answers[:4]
    assert memory.valueType == sim.NVML_VALUE_TYPE_UNSIGNED_INT
    assert 40 < memory.value.uiVal < threshold(sim, 1, "mem max")
    assert total.valueType == sim.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    assert total.value.ullVal == 18 * link17.value.ullVal > 0  # KiB moved over all 18 links
    assert link0_rx.value.ullVal > 0
    assert all(a.timestamp == int(clock.wall_s * 1e6) for a in answers)

    answers = sim.nvmlDeviceGetFieldValues(l40s, ids)  # GDDR and PCIe only
    assert [a.nvmlReturn for a in answers] == [unsupported] * len(ids)


def test_nvlink_links_exist_only_on_the_sxm_models(clock):
    sim = started(clock)

    for index, links in ((1, 18), (2, 12)):
        device = sim.devices[index]
        states = [sim.nvmlDeviceGetNvLinkState(device, link) for link in range(links)]
        assert states == [sim.NVML_FEATURE_ENABLED] * links
        with pytest.raises(sim.NVMLError_NotSupported):
            sim.nvmlDeviceGetNvLinkState(device, links)
        with pytest.raises(sim.NVMLError) as raised:
            sim.nvmlDeviceGetNvLinkState(device, sim.NVML_NVLINK_MAX_LINKS)
        assert raised.value.value == sim.NVML_ERROR_INVALID_ARGUMENT
    for pcie_card in (0, 3):
        with pytest.raises(sim.NVMLError_NotSupported):
            sim.nvmlDeviceGetNvLinkState(sim.devices[pcie_card], 0)


# -- video, limits -----------------------------------------------------------------------------


def test_encoders_and_decoders_work_now_and_then(clock):
    sim = started(clock)
    busy: dict[tuple[int, str], int] = {}
    reads = 0

    for _ in instants(clock, 3 * HOUR_S, 30.0):
        reads += 1
        for device in sim.devices:
            for kind, call in (
                ("enc", sim.nvmlDeviceGetEncoderUtilization),
                ("dec", sim.nvmlDeviceGetDecoderUtilization),
            ):
                util, period_us = call(device)
                assert 0 <= util <= 100 and period_us > 0
                busy[device.index, kind] = busy.get((device.index, kind), 0) + (util > 0)

    for index in (0, 3):  # GeForce and L40S: evaluation videos
        assert 0 < busy[index, "enc"] < reads / 3 and 0 < busy[index, "dec"] < reads / 3
    for index in (1, 2):  # H100 and A100: a little decoding now and then
        assert busy[index, "enc"] == 0 and 0 < busy[index, "dec"] < reads / 2


def test_the_limits_are_the_models(clock):
    sim = started(clock)
    h100, geforce = sim.devices[1], sim.devices[0]

    assert sim.nvmlSystemGetCudaDriverVersion() == 12040
    assert sim.nvmlSystemGetDriverVersion().startswith("550.")  # the 550 branch is CUDA 12.4
    assert sim.nvmlDeviceGetMaxClockInfo(h100, sim.NVML_CLOCK_GRAPHICS) == 1980
    assert sim.nvmlDeviceGetMaxClockInfo(h100, sim.NVML_CLOCK_MEM) == 2619
    assert sim.nvmlDeviceGetPowerManagementLimitConstraints(h100) == [200_000, 700_000]
    expected = {"shutdown": 92, "slowdown": 89, "gpu max": 87, "mem max": 95}
    assert {name: threshold(sim, 1, name) for name in THRESHOLD} == expected
    for device in sim.devices:
        low, high = sim.nvmlDeviceGetPowerManagementLimitConstraints(device)
        assert low <= sim.nvmlDeviceGetEnforcedPowerLimit(device) <= high
    assert sim.nvmlDeviceGetMaxPcieLinkGeneration(geforce) == 4
    assert sim.nvmlDeviceGetMaxPcieLinkWidth(geforce) == 16

    sim.nvmlShutdown()
    with pytest.raises(sim.NVMLError_Uninitialized):
        sim.nvmlSystemGetCudaDriverVersion()


# -- XID events --------------------------------------------------------------------------------


def xid_set(sim: SimulatedNvml, *indexes: int) -> object:
    event_set = sim.nvmlEventSetCreate()
    for index in indexes:
        device = sim.devices[index]
        sim.nvmlDeviceRegisterEvents(device, sim.nvmlEventTypeXidCriticalError, event_set)
    return event_set


def drain(sim: SimulatedNvml, event_set: object) -> list[Any]:
    events = []
    while True:
        try:
            events.append(sim.nvmlEventSetWait_v2(event_set, 0))
        except sim.NVMLError_Timeout:
            return events


def test_an_injected_xid_reaches_each_registered_set_once(clock):
    sim = started(clock)
    watching, other = xid_set(sim, 0, 1), xid_set(sim, 2)
    sim.inject_xid(1, 79)
    sim.inject_xid(0, 48)

    first, second = sim.nvmlEventSetWait_v2(watching, 0), sim.nvmlEventSetWait(watching, 0)

    assert (first.device, first.eventData) == (sim.devices[1], 79)  # in the order they happened
    assert (second.device, second.eventData) == (sim.devices[0], 48)
    assert first.eventType == sim.nvmlEventTypeXidCriticalError
    assert first.gpuInstanceId == first.computeInstanceId == 0xFFFFFFFF
    assert drain(sim, watching) == []  # delivered once
    assert drain(sim, other) == []  # GPU 2 had no XID
    sim.nvmlEventSetFree(watching)
    sim.inject_xid(0, 13)
    late = xid_set(sim, 0)
    assert drain(sim, late) == []  # registered after it happened


def test_waiting_with_timeout_zero_raises_the_timeout_without_blocking(clock):
    sim = started(clock)
    event_set = xid_set(sim, 0)

    started_s = time.perf_counter()
    with pytest.raises(sim.NVMLError_Timeout) as raised:
        sim.nvmlEventSetWait_v2(event_set, 0)
    waited_s = time.perf_counter() - started_s

    assert waited_s < 0.05
    assert raised.value.value == sim.NVML_ERROR_TIMEOUT
    assert str(raised.value) == "Timeout"
    started_s = time.perf_counter()
    with pytest.raises(sim.NVMLError_Timeout):
        sim.nvmlEventSetWait_v2(event_set, 30)
    assert time.perf_counter() - started_s < 1.0  # never much longer than asked


def test_an_xid_gpu_hits_xids_over_an_hour_and_the_others_none(clock):
    sim = started(clock, xid_gpus=(1,))
    event_set = xid_set(sim, 0, 1, 2, 3)
    events = []

    for _ in instants(clock, HOUR_S, 60.0):
        events += drain(sim, event_set)
    events += drain(sim, event_set)

    assert events
    assert all(event.device is sim.devices[1] for event in events)
    assert {event.eventData for event in events} <= {13, 31}  # application errors
    # decided by the clock: a second simulation over the same hour sees the same XIDs
    clock.advance(-HOUR_S)
    again = started(clock, xid_gpus=(1,))
    second_set = xid_set(again, 1)
    clock.advance(HOUR_S)
    assert [e.eventData for e in drain(again, second_set)] == [e.eventData for e in events]


def test_an_xid_gpu_tells_a_new_set_of_the_xid_it_hit_just_before(clock):
    sim = started(clock, xid_gpus=(1,))
    event_set = xid_set(sim, 0, 1)

    first = drain(sim, event_set)

    assert [(event.device, event.eventData) for event in first] == [(sim.devices[1], 13)]
    assert drain(sim, event_set) == []  # once


def test_a_lost_gpu_cannot_register_for_events(clock):
    sim = started(clock)
    event_set = sim.nvmlEventSetCreate()
    sim.lose_gpu(1)

    with pytest.raises(sim.NVMLError_GpuIsLost):
        sim.nvmlDeviceRegisterEvents(sim.devices[1], sim.nvmlEventTypeXidCriticalError, event_set)
    with pytest.raises(sim.NVMLError_GpuIsLost):
        sim.nvmlDeviceGetFieldValues(sim.devices[1], [sim.NVML_FI_DEV_MEMORY_TEMP])


# -- injected faults ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("function_name", "args"),
    [
        ("nvmlDeviceGetCurrentClocksEventReasons", ()),
        ("nvmlDeviceGetViolationStatus", (SimulatedNvml.NVML_PERF_POLICY_POWER,)),
        ("nvmlDeviceGetPcieReplayCounter", ()),
        ("nvmlDeviceGetFieldValues", ([SimulatedNvml.NVML_FI_DEV_MEMORY_TEMP],)),
        ("nvmlDeviceGetRemappedRows", ()),
    ],
)
def test_a_removed_or_failing_call_raises_like_the_others(clock, function_name, args):
    sim = started(clock)
    call = getattr(sim, function_name)
    call(sim.devices[1], *args)

    sim.fail_metric(1, function_name)
    with pytest.raises(sim.NVMLError_NotSupported):
        call(sim.devices[1], *args)
    call(sim.devices[2], *args)  # other GPUs still answer

    sim.remove_function(function_name)
    with pytest.raises(sim.NVMLError_FunctionNotFound):
        call(sim.devices[2], *args)


def test_an_older_driver_lacks_the_new_name_of_clock_event_reasons(clock):
    sim = started(clock)
    sim.remove_function("nvmlDeviceGetCurrentClocksEventReasons")
    sim.remove_function("nvmlSystemGetCudaDriverVersion")

    with pytest.raises(sim.NVMLError_FunctionNotFound):
        sim.nvmlDeviceGetCurrentClocksEventReasons(sim.devices[0])
    with pytest.raises(sim.NVMLError_FunctionNotFound):
        sim.nvmlSystemGetCudaDriverVersion()
    assert isinstance(sim.nvmlDeviceGetCurrentClocksThrottleReasons(sim.devices[0]), int)


@pytest.mark.parametrize(
    ("function_name", "args", "sentinel"),
    [
        ("nvmlDeviceGetPcieReplayCounter", (), 0xFFFFFFFF),
        ("nvmlDeviceGetCurrPcieLinkWidth", (), 0xFFFFFFFF),
        ("nvmlDeviceGetTemperatureThreshold", (1,), 0xFFFFFFFF),
        ("nvmlDeviceGetCurrentClocksEventReasons", (), 0xFFFFFFFFFFFFFFFF),
        ("nvmlDeviceGetTotalEccErrors", (0, 1), 0xFFFFFFFFFFFFFFFF),
    ],
)
def test_a_value_nvml_cannot_tell_is_all_ones(clock, function_name, args, sentinel):
    sim = started(clock)
    sim.report_not_available(1, function_name)

    assert getattr(sim, function_name)(sim.devices[1], *args) == sentinel
    assert getattr(sim, function_name)(sim.devices[2], *args) != sentinel


def test_a_violation_time_nvml_cannot_tell_is_all_ones_or_minus_one(clock):
    sim = started(clock)
    sim.report_not_available(1, "nvmlDeviceGetViolationStatus")
    sim.report_not_available(2, "nvmlDeviceGetViolationStatus", signed=True)
    power = sim.NVML_PERF_POLICY_POWER

    assert sim.nvmlDeviceGetViolationStatus(sim.devices[1], power).violationTime == 2**64 - 1
    assert sim.nvmlDeviceGetViolationStatus(sim.devices[2], power).violationTime == -1
    assert sim.nvmlDeviceGetViolationStatus(sim.devices[2], power).referenceTime > 0


def test_a_mig_device_answers_no_whole_gpu_health_call(clock):
    sim = started(clock, mig_gpus=(1,))
    mig = sim.nvmlDeviceGetMigDeviceHandleByIndex(sim.devices[1], 0)

    with pytest.raises(sim.NVMLError_NotSupported):
        sim.nvmlDeviceGetCurrentClocksEventReasons(mig)
    with pytest.raises(sim.NVMLError_NotSupported):
        sim.nvmlDeviceGetEccMode(mig)
    assert sim.nvmlDeviceGetEccMode(sim.devices[1]) == [1, 1]
