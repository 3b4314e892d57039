# ruff: noqa: N815, N816
# (the constants keep pynvml's names, so that SimulatedNvml can stand in for the module)
"""GPU health for SimulatedNvml: the NVML calls a health view reads, tied to each GPU's load.

SimulatedNvml (simulated_nvml.py) checks each call for injected faults and hands the device to
HealthModel, which answers in NVML's units; the constants are pynvml's values.

- Clock-event reasons: GpuIdle while the load is idle; SwPowerCap while the power draw would
  pass the enforced limit (it reaches it at the top of the training jitter and is capped there);
  SwThermalSlowdown above the model's max operating temperature (GPU, or HBM above its own max),
  HwThermalSlowdown at or above its slowdown temperature, a few degrees higher. The SM clock
  follows: scaled down under the power cap, by 15% under SW and by half under HW slowdown (which
  also cuts the draw). The violation times count the nanoseconds spent so limited.
- `hot_gpus`: poor airflow. The temperature climbs with the load past the max operating and
  slowdown temperatures (held 2 °C above slowdown, below shutdown); other GPUs stay below them.
- Counters (violation time, NVLink KiB, PCIe replays, corrected ECC errors) integrate their rate
  between two reads, as the energy counter does, sampled at up to COUNTER_SAMPLES points: they
  never go down. The state "now" (load, temperatures, reasons) is computed at most once per GPU
  in SENSOR_PERIOD_S, and the counters accrue at most once in COUNTER_MIN_SPAN_S: one tick's
  many reads of a GPU cost one computation, as a GPU's sensors refresh every few ms.
- ECC (not on the GeForce card): a few corrected errors, growing very slowly with load; row
  remapping on Ampere and newer, retired pages before it (the V100, selected by name).
  `remap_gpus`: two uncorrectable errors, remapped rows (or retired pages) pending a reset.
- PCIe: at Gen1 while idle (power saving), the model's generation under load; throughput tied
  to the load (the GPU receives more than it sends). `degraded_link_gpus`: trained at x8 of x16,
  with many more replays.
- NVLink (SXM models) and field values: memory temperature on HBM models, NVLink throughput per
  link (scope id = link) or summed over all links (scope id 0xFFFFFFFF), as nvml.h says.
- Video: the GeForce and L40S cards decode, then encode, evaluation videos mid-training; the
  H100 and A100 decode data now and then.
- XID events: `xid_gpus` hit an application XID (13 or 31) in about one busy minute in fifty,
  decided from the clock, and a set registered for one first hears of an XID 13 it hit just
  before (so that the demo shows one at once); `inject_xid` queues one at once. An event
  reaches every event set the GPU was registered with when it happened, once, in order.
"""

from __future__ import annotations

import ctypes
import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from services.sampler.simulated_nvml import SimulatedNvml, _Device

NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_TIMEOUT = 10
NVML_FEATURE_DISABLED = 0
NVML_FEATURE_ENABLED = 1
NVML_CLOCK_GRAPHICS = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2

nvmlClocksEventReasonGpuIdle = 0x1
nvmlClocksEventReasonApplicationsClocksSetting = 0x2
nvmlClocksEventReasonSwPowerCap = 0x4
nvmlClocksEventReasonHwSlowdown = 0x8
nvmlClocksEventReasonSyncBoost = 0x10
nvmlClocksEventReasonSwThermalSlowdown = 0x20
nvmlClocksEventReasonHwThermalSlowdown = 0x40
nvmlClocksEventReasonHwPowerBrakeSlowdown = 0x80
THERMAL_REASONS = nvmlClocksEventReasonSwThermalSlowdown | nvmlClocksEventReasonHwThermalSlowdown

NVML_PERF_POLICY_POWER = 0
NVML_PERF_POLICY_THERMAL = 1
NVML_MEMORY_ERROR_TYPE_CORRECTED = 0
NVML_MEMORY_ERROR_TYPE_UNCORRECTED = 1
NVML_VOLATILE_ECC = 0
NVML_AGGREGATE_ECC = 1
NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = 0
NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = 1
NVML_PCIE_UTIL_TX_BYTES = 0
NVML_PCIE_UTIL_RX_BYTES = 1
NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = 0
NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = 1
NVML_TEMPERATURE_THRESHOLD_MEM_MAX = 2
NVML_TEMPERATURE_THRESHOLD_GPU_MAX = 3
NVML_FI_DEV_MEMORY_TEMP = 82
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = 138
NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = 139
NVLINK_FIELDS = (NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX, NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX)
NVML_FI_DEV_ECC_SBE_VOL_TOTAL = 3
NVML_FI_DEV_ECC_DBE_VOL_TOTAL = 4
NVML_FI_DEV_ECC_SBE_AGG_TOTAL = 5
NVML_FI_DEV_ECC_DBE_AGG_TOTAL = 6
NVML_FI_DEV_RETIRED_SBE = 29
NVML_FI_DEV_RETIRED_DBE = 30
NVML_FI_DEV_RETIRED_PENDING = 31
NVML_FI_DEV_PCIE_REPLAY_COUNTER = 94
NVML_FI_DEV_REMAPPED_COR = 142
NVML_FI_DEV_REMAPPED_UNC = 143
NVML_FI_DEV_REMAPPED_PENDING = 144
NVML_FI_DEV_REMAPPED_FAILURE = 145
NVML_FI_DEV_NVLINK_GET_STATE = 165
NVML_NVLINK_MAX_LINKS = 36
NVML_VALUE_TYPE_DOUBLE = 0
NVML_VALUE_TYPE_UNSIGNED_INT = 1
NVML_VALUE_TYPE_UNSIGNED_LONG = 2
NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = 3
NVML_VALUE_TYPE_SIGNED_LONG_LONG = 4
NVML_VALUE_TYPE_SIGNED_INT = 5

nvmlEventTypeSingleBitEccError = 0x1
nvmlEventTypeDoubleBitEccError = 0x2
nvmlEventTypePState = 0x4
nvmlEventTypeXidCriticalError = 0x8
nvmlEventTypeClock = 0x10

ALL_LINKS = 0xFFFFFFFF  # a field's scope id for the sum over every NVLink link
NO_INSTANCE = 0xFFFFFFFF  # an event's gpuInstanceId / computeInstanceId outside MIG
IDLE_LOAD = 0.02  # at or below: idle (P8, GpuIdle, PCIe Gen1), as the P-state says
POWER_HEADROOM = 1.08  # the draw the full load would want, as a share of the enforced limit
HW_SLOWDOWN_POWER = 0.6  # the share of that draw left while HW slowdown halves the clocks
SAMPLING_PERIOD_US = 167_000  # the encoder's and decoder's sampling period
COUNTER_SAMPLES = 60  # points at which a counter's rate is sampled between two reads
SENSOR_PERIOD_S = 0.01  # a GPU's state "now" is computed at most this often (its sensors' refresh)
COUNTER_MIN_SPAN_S = 0.01  # reads closer than this to the last accrual (one tick's) accrue none
PCIE_RX_KB_S = 3_000_000  # host to GPU at full load (KB/s), before jitter
PCIE_TX_KB_S = 400_000
NVLINK_KIB_S = 1_200_000  # per link and direction at full load
REPLAYS_PER_S = 1 / 7200  # at full load; a degraded link replays 200 times as often
DEGRADED_REPLAY_FACTOR = 200
CORRECTED_PER_S = 1 / 10_800  # corrected ECC errors per second at full load
XID_CHANCE = 0.02  # share of busy minutes with an XID on an `xid_gpus` GPU: about one a busy hour
XID_AT_START = 13
XID_CODES = (13, 31)  # graphics engine exception, GPU memory page fault: application errors
XID_SCAN_S = 7 * 86400  # a set waited on after longer sees the scheduled XIDs of the last week
RETIRABLE_PAGES = 32 << 18  # 4 KiB pages in 32 GiB


class HealthConstants:
    """pynvml's health constants, as attributes of the module SimulatedNvml stands in for."""

    NVML_SUCCESS = NVML_SUCCESS
    NVML_ERROR_INVALID_ARGUMENT = NVML_ERROR_INVALID_ARGUMENT
    NVML_ERROR_TIMEOUT = NVML_ERROR_TIMEOUT
    NVML_FEATURE_DISABLED = NVML_FEATURE_DISABLED
    NVML_FEATURE_ENABLED = NVML_FEATURE_ENABLED
    NVML_CLOCK_GRAPHICS = NVML_CLOCK_GRAPHICS
    nvmlClocksEventReasonGpuIdle = nvmlClocksEventReasonGpuIdle
    nvmlClocksEventReasonApplicationsClocksSetting = nvmlClocksEventReasonApplicationsClocksSetting
    nvmlClocksEventReasonSwPowerCap = nvmlClocksEventReasonSwPowerCap
    nvmlClocksEventReasonHwSlowdown = nvmlClocksEventReasonHwSlowdown
    nvmlClocksEventReasonSyncBoost = nvmlClocksEventReasonSyncBoost
    nvmlClocksEventReasonSwThermalSlowdown = nvmlClocksEventReasonSwThermalSlowdown
    nvmlClocksEventReasonHwThermalSlowdown = nvmlClocksEventReasonHwThermalSlowdown
    nvmlClocksEventReasonHwPowerBrakeSlowdown = nvmlClocksEventReasonHwPowerBrakeSlowdown
    NVML_PERF_POLICY_POWER = NVML_PERF_POLICY_POWER
    NVML_PERF_POLICY_THERMAL = NVML_PERF_POLICY_THERMAL
    NVML_MEMORY_ERROR_TYPE_CORRECTED = NVML_MEMORY_ERROR_TYPE_CORRECTED
    NVML_MEMORY_ERROR_TYPE_UNCORRECTED = NVML_MEMORY_ERROR_TYPE_UNCORRECTED
    NVML_VOLATILE_ECC = NVML_VOLATILE_ECC
    NVML_AGGREGATE_ECC = NVML_AGGREGATE_ECC
    NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS = (
        NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
    )
    NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR = (
        NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
    )
    NVML_PCIE_UTIL_TX_BYTES = NVML_PCIE_UTIL_TX_BYTES
    NVML_PCIE_UTIL_RX_BYTES = NVML_PCIE_UTIL_RX_BYTES
    NVML_TEMPERATURE_THRESHOLD_SHUTDOWN = NVML_TEMPERATURE_THRESHOLD_SHUTDOWN
    NVML_TEMPERATURE_THRESHOLD_SLOWDOWN = NVML_TEMPERATURE_THRESHOLD_SLOWDOWN
    NVML_TEMPERATURE_THRESHOLD_MEM_MAX = NVML_TEMPERATURE_THRESHOLD_MEM_MAX
    NVML_TEMPERATURE_THRESHOLD_GPU_MAX = NVML_TEMPERATURE_THRESHOLD_GPU_MAX
    NVML_FI_DEV_MEMORY_TEMP = NVML_FI_DEV_MEMORY_TEMP
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX = NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
    NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX = NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX
    NVML_NVLINK_MAX_LINKS = NVML_NVLINK_MAX_LINKS
    NVML_FI_DEV_ECC_SBE_VOL_TOTAL = NVML_FI_DEV_ECC_SBE_VOL_TOTAL
    NVML_FI_DEV_ECC_DBE_VOL_TOTAL = NVML_FI_DEV_ECC_DBE_VOL_TOTAL
    NVML_FI_DEV_ECC_SBE_AGG_TOTAL = NVML_FI_DEV_ECC_SBE_AGG_TOTAL
    NVML_FI_DEV_ECC_DBE_AGG_TOTAL = NVML_FI_DEV_ECC_DBE_AGG_TOTAL
    NVML_FI_DEV_RETIRED_SBE = NVML_FI_DEV_RETIRED_SBE
    NVML_FI_DEV_RETIRED_DBE = NVML_FI_DEV_RETIRED_DBE
    NVML_FI_DEV_RETIRED_PENDING = NVML_FI_DEV_RETIRED_PENDING
    NVML_FI_DEV_PCIE_REPLAY_COUNTER = NVML_FI_DEV_PCIE_REPLAY_COUNTER
    NVML_FI_DEV_REMAPPED_COR = NVML_FI_DEV_REMAPPED_COR
    NVML_FI_DEV_REMAPPED_UNC = NVML_FI_DEV_REMAPPED_UNC
    NVML_FI_DEV_REMAPPED_PENDING = NVML_FI_DEV_REMAPPED_PENDING
    NVML_FI_DEV_REMAPPED_FAILURE = NVML_FI_DEV_REMAPPED_FAILURE
    NVML_FI_DEV_NVLINK_GET_STATE = NVML_FI_DEV_NVLINK_GET_STATE
    NVML_VALUE_TYPE_DOUBLE = NVML_VALUE_TYPE_DOUBLE
    NVML_VALUE_TYPE_UNSIGNED_INT = NVML_VALUE_TYPE_UNSIGNED_INT
    NVML_VALUE_TYPE_UNSIGNED_LONG = NVML_VALUE_TYPE_UNSIGNED_LONG
    NVML_VALUE_TYPE_UNSIGNED_LONG_LONG = NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
    NVML_VALUE_TYPE_SIGNED_LONG_LONG = NVML_VALUE_TYPE_SIGNED_LONG_LONG
    NVML_VALUE_TYPE_SIGNED_INT = NVML_VALUE_TYPE_SIGNED_INT
    nvmlEventTypeSingleBitEccError = nvmlEventTypeSingleBitEccError
    nvmlEventTypeDoubleBitEccError = nvmlEventTypeDoubleBitEccError
    nvmlEventTypePState = nvmlEventTypePState
    nvmlEventTypeXidCriticalError = nvmlEventTypeXidCriticalError
    nvmlEventTypeClock = nvmlEventTypeClock


@dataclass(frozen=True)
class HealthSpec:
    """What a GPU model has beyond its GpuModel limits (as nvidia-smi -q shows them)."""

    pcie_gen: int
    nvlinks: int
    ecc: bool
    hbm: bool
    row_remap: bool  # Ampere and newer; older ECC GPUs retire pages instead
    shutdown_c: int
    slowdown_c: int  # HW slowdown
    gpu_max_c: int  # max operating temperature: SW slowdown above it
    mem_max_c: int | None  # HBM only
    power_min_mw: int
    power_max_mw: int
    video: str = ""  # "eval": evaluation videos mid-training; "nvdec": decodes data now and then
    pcie_width: int = 16


# (PCIe gen, NVLinks, ECC, HBM, row remap, shutdown/slowdown/max/memory max °C, power range mW)
SPECS = {
    "NVIDIA GeForce RTX 4090":
        HealthSpec(4, 0, False, False, False, 96, 93, 90, None, 150_000, 600_000, "eval"),
    "NVIDIA H100 80GB HBM3":
        HealthSpec(5, 18, True, True, True, 92, 89, 87, 95, 200_000, 700_000, "nvdec"),
    "NVIDIA A100-SXM4-40GB":
        HealthSpec(4, 12, True, True, True, 92, 89, 85, 95, 100_000, 400_000, "nvdec"),
    "NVIDIA L40S": HealthSpec(4, 0, True, False, True, 94, 91, 89, None, 100_000, 350_000, "eval"),
    "Tesla V100-SXM2-32GB":
        HealthSpec(3, 6, True, True, False, 90, 87, 83, 85, 150_000, 300_000),
}  # fmt: skip
OTHER_SPEC = HealthSpec(4, 0, False, False, False, 92, 89, 85, None, 100_000, 300_000)


class FieldValueUnion(ctypes.Union):
    """pynvml's c_nvmlValue_t: every member reads the same 8 bytes."""

    _fields_ = (
        ("dVal", ctypes.c_double),
        ("uiVal", ctypes.c_uint),
        ("ulVal", ctypes.c_ulong),
        ("ullVal", ctypes.c_ulonglong),
        ("sllVal", ctypes.c_longlong),
        ("siVal", ctypes.c_int),
        ("usVal", ctypes.c_ushort),
    )


@dataclass(frozen=True)
class GpuState:
    """A GPU's load, temperatures, wanted power draw and clock-event reasons at one instant."""

    load: float
    temp_c: int
    mem_temp_c: int | None
    demand_mw: float
    reasons: int


@dataclass
class _Counters:
    read_s: float | None = None
    power_ns: float = 0.0
    thermal_ns: float = 0.0
    nvlink_tx_kib: float = 0.0
    nvlink_rx_kib: float = 0.0
    replays: float = 0.0
    corrected: float = 0.0


@dataclass
class _Watch:
    device: _Device
    mask: int
    seen_s: float  # scheduled XIDs up to this instant are queued


@dataclass
class EventSet:
    """An NVML event set: the GPUs registered with it and the events not yet waited for."""

    watches: dict[int, _Watch] = field(default_factory=dict)
    pending: deque[SimpleNamespace] = field(default_factory=deque)
    freed: bool = False


class HealthModel:
    """The health of SimulatedNvml's GPUs; every call gets a device already checked for faults."""

    def __init__(
        self,
        sim: SimulatedNvml,
        noise: Callable[[str, float], float],
        hot_gpus: tuple[int, ...] = (),
        remap_gpus: tuple[int, ...] = (),
        degraded_link_gpus: tuple[int, ...] = (),
        xid_gpus: tuple[int, ...] = (),
    ) -> None:
        self._sim = sim
        self._noise = noise
        self.hot = frozenset(hot_gpus)
        self.remap = frozenset(remap_gpus)
        self.degraded = frozenset(degraded_link_gpus)
        self.xid = frozenset(xid_gpus)
        self._counters: dict[int, _Counters] = {}
        self._counters_lock = threading.Lock()
        self._states: dict[int, tuple[float, GpuState]] = {}  # per GPU: its state now, and when
        self._events = threading.Condition()
        self._sets: list[EventSet] = []

    # -- the GPU's state -----------------------------------------------------------------------

    @staticmethod
    def spec(device: _Device) -> HealthSpec:
        """Return the model's health spec."""
        return SPECS.get(device.model.name, OTHER_SPEC)

    def _now(self) -> float:
        return self._sim._clock()

    def state(self, device: _Device, at_s: float | None = None) -> GpuState:
        """Return the GPU's state at at_s (default: now, as computed within SENSOR_PERIOD_S)."""
        if at_s is not None:
            return self._state(device, at_s)
        now_s = self._now()
        cached = self._states.get(device.index)
        if cached is not None and cached[0] <= now_s < cached[0] + SENSOR_PERIOD_S:
            return cached[1]
        state = self._state(device, now_s)
        self._states[device.index] = (now_s, state)
        return state

    def _state(self, device: _Device, t_s: float) -> GpuState:
        spec, model, hot = self.spec(device), device.model, device.index in self.hot
        load = self._sim._load(device, at_s=t_s)
        lagged = self._sim._load(device, lag_s=90, at_s=t_s)
        temp = 33 + 48 * lagged + 2 * self._noise(device.uuid + "t", t_s)
        if hot:
            temp = min(spec.slowdown_c + 2, temp + (spec.gpu_max_c - 72) * lagged)
        temp_c = round(temp)
        mem_temp_c = None
        if spec.hbm:
            mem_lagged = self._sim._load(device, lag_s=120, at_s=t_s)
            mem = 31 + 50 * mem_lagged + 2 * self._noise(device.uuid + "hbm", t_s)
            mem_temp_c = round(mem + (5 * mem_lagged if hot else 0))
        reasons = nvmlClocksEventReasonGpuIdle if load <= IDLE_LOAD else 0
        if temp_c > spec.gpu_max_c or (
            mem_temp_c is not None and spec.mem_max_c is not None and mem_temp_c > spec.mem_max_c
        ):
            reasons |= nvmlClocksEventReasonSwThermalSlowdown
        if temp_c >= spec.slowdown_c:
            reasons |= nvmlClocksEventReasonHwThermalSlowdown
        limit = model.power_limit_mw
        demand = model.idle_power_mw + (limit * POWER_HEADROOM - model.idle_power_mw) * load
        if reasons & nvmlClocksEventReasonHwThermalSlowdown:
            demand *= HW_SLOWDOWN_POWER
        if demand >= limit:
            reasons |= nvmlClocksEventReasonSwPowerCap
        return GpuState(load, temp_c, mem_temp_c, demand, reasons)

    def temperature_c(self, device: _Device) -> int:
        """Return the core temperature in °C."""
        return self.state(device).temp_c

    def power_mw(self, device: _Device) -> int:
        """Return the power draw in mW: what the load wants, capped at the enforced limit."""
        return min(device.model.power_limit_mw, int(self.state(device).demand_mw))

    def sm_clock_mhz(self, device: _Device) -> int:
        """Return the SM clock in MHz: boosted by the load, lowered by the clock-event reasons."""
        state, model = self.state(device), device.model
        mhz = 210 + (model.max_sm_clock_mhz - 210) * min(1.0, 3 * state.load)
        if state.reasons & nvmlClocksEventReasonSwPowerCap:  # a few bins down, at least
            mhz *= min(0.97, model.power_limit_mw / state.demand_mw)
        if state.reasons & nvmlClocksEventReasonHwThermalSlowdown:
            mhz *= 0.5
        elif state.reasons & nvmlClocksEventReasonSwThermalSlowdown:
            mhz *= 0.85
        return round(mhz)

    def reasons(self, device: _Device) -> int:
        """Return the clock-event reasons now (a bitmask of nvmlClocksEventReason*)."""
        return self.state(device).reasons

    # -- counters ------------------------------------------------------------------------------

    def counters(self, device: _Device) -> _Counters:
        """Bring the GPU's counters up to now and return them."""
        now_s = self._now()
        with self._counters_lock:
            counters = self._counters.setdefault(device.index, _Counters())
            last_s = counters.read_s
            if last_s is not None and last_s <= now_s < last_s + COUNTER_MIN_SPAN_S:
                return counters  # the few ms since are counted at the next read
            if last_s is not None and now_s > last_s:
                span_s = now_s - last_s
                steps = max(1, min(COUNTER_SAMPLES, math.ceil(span_s)))
                for step in range(1, steps + 1):
                    self._accrue(device, counters, last_s + span_s * step / steps, span_s / steps)
            counters.read_s = now_s
            return counters

    def _accrue(self, device: _Device, counters: _Counters, at_s: float, span_s: float) -> None:
        state, spec = self.state(device, at_s), self.spec(device)
        if state.reasons & nvmlClocksEventReasonSwPowerCap:
            counters.power_ns += span_s * 1e9
        if state.reasons & THERMAL_REASONS:
            counters.thermal_ns += span_s * 1e9
        nvlink_kib = NVLINK_KIB_S * spec.nvlinks * state.load * span_s
        counters.nvlink_tx_kib += nvlink_kib
        counters.nvlink_rx_kib += nvlink_kib * 0.97
        degraded = DEGRADED_REPLAY_FACTOR if device.index in self.degraded else 1
        counters.replays += REPLAYS_PER_S * degraded * (0.1 + state.load) * span_s
        if spec.ecc:
            counters.corrected += CORRECTED_PER_S * state.load * span_s

    def violation(self, device: _Device, policy: int) -> SimpleNamespace:
        """Return `.referenceTime` (µs since the epoch) and `.violationTime` (ns, cumulative)."""
        counters = self.counters(device)
        if policy == NVML_PERF_POLICY_POWER:
            spent_ns = counters.power_ns
        elif policy == NVML_PERF_POLICY_THERMAL:
            spent_ns = counters.thermal_ns
        else:
            raise self._sim.NVMLError_NotSupported()
        return SimpleNamespace(referenceTime=int(self._now() * 1e6), violationTime=int(spent_ns))

    # -- memory errors -------------------------------------------------------------------------

    def _ecc_spec(self, device: _Device) -> HealthSpec:
        spec = self.spec(device)
        if not spec.ecc:
            raise self._sim.NVMLError_NotSupported()
        return spec

    def ecc_mode(self, device: _Device) -> list[int]:
        """Return [current, pending] ECC mode: enabled wherever the GPU has ECC."""
        self._ecc_spec(device)
        return [NVML_FEATURE_ENABLED, NVML_FEATURE_ENABLED]

    def ecc_errors(self, device: _Device, error_type: int, counter_type: int) -> int:
        """Return corrected or uncorrected ECC errors since the driver loaded or ever."""
        self._ecc_spec(device)
        if counter_type not in (NVML_VOLATILE_ECC, NVML_AGGREGATE_ECC):
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if error_type == NVML_MEMORY_ERROR_TYPE_UNCORRECTED:
            return 2 if device.index in self.remap else 0
        if error_type != NVML_MEMORY_ERROR_TYPE_CORRECTED:
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        volatile = int(self.counters(device).corrected)
        if counter_type == NVML_VOLATILE_ECC:
            return volatile
        return volatile + int(40 * self._noise(device.uuid + "ecc", 0))

    def remapped_rows(self, device: _Device) -> tuple[int, int, int, int]:
        """Return (correctable, uncorrectable, pending, failure) remapped rows."""
        if not (self._ecc_spec(device).row_remap):
            raise self._sim.NVMLError_NotSupported()
        corrected = 1 if self._noise(device.uuid + "rows", 0) < 0.3 else 0
        if device.index in self.remap:
            return (corrected, 2, 1, 0)
        return (corrected, 0, 0, 0)

    def _retiring_spec(self, device: _Device) -> HealthSpec:
        spec = self._ecc_spec(device)
        if spec.row_remap:
            raise self._sim.NVMLError_NotSupported()
        return spec

    def retired_pages(self, device: _Device, cause: int) -> list[int]:
        """Return the addresses of the pages retired for a cause (pre-Ampere ECC GPUs)."""
        self._retiring_spec(device)
        if cause == NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS:
            count, key = int(3 * self._noise(device.uuid + "sbe", 0)), "sbe"
        elif cause == NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR:
            count, key = (2 if device.index in self.remap else 0), "dbe"
        else:
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return [
            int(RETIRABLE_PAGES * self._noise(f"{device.uuid}/{key}/{page}", 0))
            for page in range(count)
        ]

    def retired_pages_pending(self, device: _Device) -> int:
        """Return 1 while retired pages wait for a reset to take effect, else 0."""
        self._retiring_spec(device)
        return 1 if device.index in self.remap else 0

    # -- PCIe and NVLink -----------------------------------------------------------------------

    def pcie_gen(self, device: _Device, current: bool) -> int:
        """Return the PCIe generation: the maximum, or now (Gen1 while idle)."""
        idle = self.state(device).load <= IDLE_LOAD
        return 1 if current and idle else self.spec(device).pcie_gen

    def pcie_width(self, device: _Device, current: bool) -> int:
        """Return the PCIe link width: the maximum, or as trained (x8 on a degraded link)."""
        width = self.spec(device).pcie_width
        return width // 2 if current and device.index in self.degraded else width

    def pcie_throughput(self, device: _Device, counter: int) -> int:
        """Return the KB/s sent (TX) or received (RX) over the last 20 ms."""
        if counter not in (NVML_PCIE_UTIL_TX_BYTES, NVML_PCIE_UTIL_RX_BYTES):
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        now_s, load = self._now(), self.state(device).load
        jitter = 0.6 + 0.8 * self._noise(f"{device.uuid}/pcie{counter}", now_s)
        rate = PCIE_RX_KB_S if counter == NVML_PCIE_UTIL_RX_BYTES else PCIE_TX_KB_S
        return int(20 + 80 * jitter + rate * load * jitter)

    def pcie_replays(self, device: _Device) -> int:
        """Return the PCIe replays since the driver loaded."""
        base = 150 if device.index in self.degraded else int(4 * self._noise(device.uuid + "r", 0))
        return base + int(self.counters(device).replays)

    def nvlink_state(self, device: _Device, link: int) -> int:
        """Return NVML_FEATURE_ENABLED for a link the GPU has; NotSupported for any other."""
        if not 0 <= link < NVML_NVLINK_MAX_LINKS:
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if link >= self.spec(device).nvlinks:
            raise self._sim.NVMLError_NotSupported()
        return NVML_FEATURE_ENABLED

    # -- field values --------------------------------------------------------------------------

    def field_values(self, device: _Device, field_ids: list[Any]) -> list[SimpleNamespace]:
        """Return one answer per field id (an int, or a (field id, scope id) tuple)."""
        now_us = int(self._now() * 1e6)
        reads = self._counter_fields(device)  # built once for all the entries
        answers = []
        for entry in field_ids:
            try:
                field_id, scope_id = entry
            except TypeError:
                field_id, scope_id = entry, 0
            value = FieldValueUnion()
            value_type, code = self._field(device, int(field_id), int(scope_id), value, reads)
            answers.append(
                SimpleNamespace(
                    fieldId=field_id,
                    scopeId=scope_id,
                    timestamp=now_us,
                    latencyUsec=0,
                    valueType=value_type,
                    nvmlReturn=code,
                    value=value,
                )
            )
        return answers

    def _field(
        self,
        device: _Device,
        field_id: int,
        scope_id: int,
        value: FieldValueUnion,
        reads: dict[int, Callable[[], int]],
    ) -> tuple[int, int]:
        """Set value for one field; return (value type, NVML return code)."""
        unsupported = (NVML_VALUE_TYPE_DOUBLE, self._sim.NVML_ERROR_NOT_SUPPORTED)
        if field_id == NVML_FI_DEV_MEMORY_TEMP:
            mem_temp_c = self.state(device).mem_temp_c
            if mem_temp_c is None:
                return unsupported
            value.uiVal = mem_temp_c
            return NVML_VALUE_TYPE_UNSIGNED_INT, NVML_SUCCESS
        if field_id in NVLINK_FIELDS:
            links = self.spec(device).nvlinks
            if not links:
                return unsupported
            if scope_id != ALL_LINKS and scope_id >= NVML_NVLINK_MAX_LINKS:
                return NVML_VALUE_TYPE_DOUBLE, NVML_ERROR_INVALID_ARGUMENT
            if scope_id != ALL_LINKS and scope_id >= links:
                return unsupported
            counters = self.counters(device)
            tx = field_id == NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX
            per_link = int((counters.nvlink_tx_kib if tx else counters.nvlink_rx_kib) / links)
            value.ullVal = per_link * links if scope_id == ALL_LINKS else per_link
            return NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, NVML_SUCCESS
        if field_id == NVML_FI_DEV_NVLINK_GET_STATE:
            try:
                value.uiVal = self.nvlink_state(device, scope_id)
            except self._sim.NVMLError as error:
                return NVML_VALUE_TYPE_DOUBLE, int(error.value or 0)
            return NVML_VALUE_TYPE_UNSIGNED_INT, NVML_SUCCESS
        read = reads.get(field_id)
        if read is None:
            return unsupported
        try:
            value.ullVal = int(read())
        except self._sim.NVMLError as error:  # NotSupported on a GPU without it
            return NVML_VALUE_TYPE_DOUBLE, int(error.value or 0)
        return NVML_VALUE_TYPE_UNSIGNED_LONG_LONG, NVML_SUCCESS

    def _counter_fields(self, device: _Device) -> dict[int, Callable[[], int]]:
        """Return the counter fields, each read as the call that gives the same number does."""
        corrected = NVML_MEMORY_ERROR_TYPE_CORRECTED
        uncorrected = NVML_MEMORY_ERROR_TYPE_UNCORRECTED
        sbe = NVML_PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS
        dbe = NVML_PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR
        return {
            NVML_FI_DEV_ECC_SBE_VOL_TOTAL: lambda: self.ecc_errors(
                device, corrected, NVML_VOLATILE_ECC
            ),
            NVML_FI_DEV_ECC_DBE_VOL_TOTAL: lambda: self.ecc_errors(
                device, uncorrected, NVML_VOLATILE_ECC
            ),
            NVML_FI_DEV_ECC_SBE_AGG_TOTAL: lambda: self.ecc_errors(
                device, corrected, NVML_AGGREGATE_ECC
            ),
            NVML_FI_DEV_ECC_DBE_AGG_TOTAL: lambda: self.ecc_errors(
                device, uncorrected, NVML_AGGREGATE_ECC
            ),
            NVML_FI_DEV_RETIRED_SBE: lambda: len(self.retired_pages(device, sbe)),
            NVML_FI_DEV_RETIRED_DBE: lambda: len(self.retired_pages(device, dbe)),
            NVML_FI_DEV_RETIRED_PENDING: lambda: self.retired_pages_pending(device),
            NVML_FI_DEV_PCIE_REPLAY_COUNTER: lambda: self.pcie_replays(device),
            NVML_FI_DEV_REMAPPED_COR: lambda: self.remapped_rows(device)[0],
            NVML_FI_DEV_REMAPPED_UNC: lambda: self.remapped_rows(device)[1],
            NVML_FI_DEV_REMAPPED_PENDING: lambda: self.remapped_rows(device)[2],
            NVML_FI_DEV_REMAPPED_FAILURE: lambda: self.remapped_rows(device)[3],
        }

    # -- video, limits -------------------------------------------------------------------------

    def video_util(self, device: _Device, encoder: bool) -> list[int]:
        """Return [utilization %, sampling period µs] of the encoder or the decoder."""
        spec, now_s = self.spec(device), self._now()
        position = self._sim._cycle(device, now_s)
        util = 0.0
        if device.idle or device.mig_devices or self.state(device).load <= IDLE_LOAD:
            pass
        elif spec.video == "eval" and encoder and 0.45 <= position < 0.6:
            util = 20 + 25 * self._noise(device.uuid + "enc", now_s)
        elif spec.video == "eval" and not encoder and 0.35 <= position < 0.5:
            util = 10 + 20 * self._noise(device.uuid + "dec", now_s)
        elif (
            spec.video == "nvdec"
            and not encoder
            and self._noise(device.uuid + "nv", now_s // 60) < 0.25
        ):
            util = 2 + 6 * self._noise(device.uuid + "dec", now_s)
        return [round(util), SAMPLING_PERIOD_US]

    def max_clock_mhz(self, device: _Device, clock_type: int) -> int:
        """Return the model's maximum SM (graphics) or memory clock in MHz."""
        if clock_type in (NVML_CLOCK_SM, NVML_CLOCK_GRAPHICS):
            return device.model.max_sm_clock_mhz
        if clock_type == NVML_CLOCK_MEM:
            return device.model.mem_clock_mhz
        raise self._sim.NVMLError_NotSupported()

    def power_limit_range(self, device: _Device) -> list[int]:
        """Return [min, max] power limit one may set, in mW."""
        spec = self.spec(device)
        return [spec.power_min_mw, spec.power_max_mw]

    def temperature_threshold(self, device: _Device, threshold: int) -> int:
        """Return a temperature threshold in °C; the memory's only on HBM models."""
        spec = self.spec(device)
        found = {
            NVML_TEMPERATURE_THRESHOLD_SHUTDOWN: spec.shutdown_c,
            NVML_TEMPERATURE_THRESHOLD_SLOWDOWN: spec.slowdown_c,
            NVML_TEMPERATURE_THRESHOLD_GPU_MAX: spec.gpu_max_c,
            NVML_TEMPERATURE_THRESHOLD_MEM_MAX: spec.mem_max_c,
        }.get(threshold)
        if found is None:
            raise self._sim.NVMLError_NotSupported()
        return found

    # -- XID events ----------------------------------------------------------------------------

    def supported_events(self, device: _Device) -> int:
        """Return the event types the GPU can report (ECC events only with ECC)."""
        ecc = nvmlEventTypeSingleBitEccError | nvmlEventTypeDoubleBitEccError
        always = nvmlEventTypePState | nvmlEventTypeXidCriticalError | nvmlEventTypeClock
        return always | (ecc if self.spec(device).ecc else 0)

    def check_call(self, function_name: str) -> None:
        """Check a call that takes no device: an NVML session, and a driver that has it."""
        self._sim._check_session()
        if function_name in self._sim._missing:
            raise self._sim.NVMLError_FunctionNotFound()

    def _live(self, event_set: Any) -> EventSet:
        if not isinstance(event_set, EventSet) or event_set.freed:
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return event_set

    def create_set(self) -> EventSet:
        """Return a new event set."""
        event_set = EventSet()
        with self._events:
            self._sets.append(event_set)
        return event_set

    def register(self, device: _Device, event_types: int, event_set: Any) -> None:
        """Register the GPU with the set: its events from now on reach the set."""
        if event_types & ~self.supported_events(device):
            raise self._sim.NVMLError_NotSupported()
        with self._events:
            live = self._live(event_set)
            new = device.index not in live.watches
            watch = live.watches.setdefault(device.index, _Watch(device, 0, self._now()))
            watch.mask |= event_types
            if new and event_types & nvmlEventTypeXidCriticalError and device.index in self.xid:
                # the XID an `xid_gpus` GPU hit just before: the demo shows one from the start
                live.pending.append(self._event(device, XID_AT_START))

    def free_set(self, event_set: Any) -> None:
        """Free the set: it is no longer registered, and its events are dropped."""
        with self._events:
            live = self._live(event_set)
            live.freed = True
            live.watches.clear()
            live.pending.clear()
            self._sets.remove(live)

    def wait(self, event_set: Any, timeout_ms: int) -> SimpleNamespace:
        """Return the set's next event; raise NVMLError_Timeout after timeout_ms without one."""
        deadline = time.monotonic() + max(0, timeout_ms) / 1000
        with self._events:
            while True:
                live = self._live(event_set)
                self._pump(live, self._now())
                if live.pending:
                    return live.pending.popleft()
                remaining_s = deadline - time.monotonic()
                if remaining_s <= 0:
                    raise self._sim.NVMLError_Timeout()
                self._events.wait(min(remaining_s, 0.1))  # the clock may bring a scheduled XID

    def inject_xid(self, index: int, code: int) -> None:
        """Report XID `code` on GPU `index` now, to every set it is registered with."""
        device = self._sim.devices[index]
        with self._events:
            now_s = self._now()
            for event_set in self._sets:
                self._pump(event_set, now_s)
                watch = event_set.watches.get(index)
                if watch is not None and watch.mask & nvmlEventTypeXidCriticalError:
                    event_set.pending.append(self._event(device, code))
            self._events.notify_all()

    @staticmethod
    def _event(device: _Device, code: int) -> SimpleNamespace:
        return SimpleNamespace(
            device=device,
            eventType=nvmlEventTypeXidCriticalError,
            eventData=code,
            gpuInstanceId=NO_INSTANCE,
            computeInstanceId=NO_INSTANCE,
        )

    def _pump(self, event_set: EventSet, now_s: float) -> None:
        """Queue the scheduled XIDs of the set's GPUs up to now, in the order they happened."""
        found: list[tuple[float, int, _Device]] = []
        for watch in event_set.watches.values():
            if watch.mask & nvmlEventTypeXidCriticalError and now_s > watch.seen_s:
                found += [
                    (at_s, code, watch.device)
                    for at_s, code in self.scheduled_xids(watch.device, watch.seen_s, now_s)
                ]
                watch.seen_s = now_s
        for _, code, device in sorted(found, key=lambda event: event[0]):
            event_set.pending.append(self._event(device, code))

    def scheduled_xids(
        self, device: _Device, after_s: float, until_s: float
    ) -> list[tuple[float, int]]:
        """Return the (time, code) of the XIDs an `xid_gpus` GPU hits in (after_s, until_s]."""
        if device.index not in self.xid or device.lost:
            return []
        key = f"{device.uuid}/xid"
        found = []
        first_s = max(after_s, until_s - XID_SCAN_S)
        for minute in range(int(first_s // 60), int(until_s // 60) + 1):
            if self._noise(key, minute) >= XID_CHANCE:
                continue
            at_s = minute * 60 + 60 * self._noise(key + "/at", minute)
            if not after_s < at_s <= until_s or self._sim._load(device, at_s=at_s) <= IDLE_LOAD:
                continue
            code = XID_CODES[int(len(XID_CODES) * self._noise(key + "/code", minute))]
            found.append((at_s, code))
        return found
