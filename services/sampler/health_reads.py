"""Read a GPU's health through NVML: limits once, health fields and XID events every tick.

Called by GpuReader (services/sampler/nvml.py), through its error handling: a call the GPU or
the driver does not have (NotSupported, FunctionNotFound) is None, logged once; a lost GPU or a
lost session is raised as for any other metric. What NVML gives:

- limits (GpuLimits), read once per GPU and session: max clocks, power-limit range, temperature
  thresholds, PCIe link maximum, NVLink links that exist, ECC mode;
- health (GpuHealth) each tick: clock-event reasons and the power and thermal violation time
  (two calls), the current PCIe link (two calls), encoder and decoder utilization (two calls),
  and every counter that has an NVML field (ECC totals, retired pages, remapped rows, PCIe
  replays, memory temperature, NVLink states and throughput) in one nvmlDeviceGetFieldValues
  call; an entry whose own return is not success, or is NVML_VALUE_NOT_AVAILABLE, is None;
- PCIe throughput: NVML measures each direction over 20 ms, blocking; the two directions of
  every GPU are read at once on a small pool of threads (ctypes lets go of the GIL), so a tick
  waits about 20 ms for all GPUs, not 40 ms per GPU;
- XID errors: one NVML event set per GPU, registered for critical XID errors when the GPU is
  first identified, drained without waiting (timeout 0) each tick, at most MAX_XIDS_PER_TICK a
  tick (the rest wait in NVML's queue for the next).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from common.messages import GpuHealth, GpuLimits, XidEvent
from services.sampler.nvml_values import milli as _milli
from services.sampler.nvml_values import pct as _pct
from services.sampler.nvml_values import u32 as _u32
from services.sampler.nvml_values import u64 as _u64

MAX_XIDS_PER_TICK = 64
PCIE_POOL_THREADS = 16
NO_INSTANCE = 0xFFFFFFFF  # gpuInstanceId of an event outside MIG

# GpuHealth field <- NVML field id name: each is one entry of the per-tick field-values call
COUNTER_FIELDS = {
    "ecc_corrected_volatile": "NVML_FI_DEV_ECC_SBE_VOL_TOTAL",
    "ecc_uncorrected_volatile": "NVML_FI_DEV_ECC_DBE_VOL_TOTAL",
    "ecc_corrected_aggregate": "NVML_FI_DEV_ECC_SBE_AGG_TOTAL",
    "ecc_uncorrected_aggregate": "NVML_FI_DEV_ECC_DBE_AGG_TOTAL",
    "retired_pages_sbe": "NVML_FI_DEV_RETIRED_SBE",
    "retired_pages_dbe": "NVML_FI_DEV_RETIRED_DBE",
    "retired_pages_pending": "NVML_FI_DEV_RETIRED_PENDING",
    "remapped_rows_correctable": "NVML_FI_DEV_REMAPPED_COR",
    "remapped_rows_uncorrectable": "NVML_FI_DEV_REMAPPED_UNC",
    "remap_pending": "NVML_FI_DEV_REMAPPED_PENDING",
    "remap_failure": "NVML_FI_DEV_REMAPPED_FAILURE",
    "pcie_replays": "NVML_FI_DEV_PCIE_REPLAY_COUNTER",
    "mem_temp_c": "NVML_FI_DEV_MEMORY_TEMP",
}
YES_NO_FIELDS = frozenset({"retired_pages_pending", "remap_pending", "remap_failure"})
# per NVLink link (scope id = link): its state, and its data throughput counters in KiB
NVLINK_STATE = "NVML_FI_DEV_NVLINK_GET_STATE"
NVLINK_TX = "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX"
NVLINK_RX = "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX"
THRESHOLDS = {
    "temp_slowdown_c": "NVML_TEMPERATURE_THRESHOLD_SLOWDOWN",
    "temp_shutdown_c": "NVML_TEMPERATURE_THRESHOLD_SHUTDOWN",
    "temp_max_operating_c": "NVML_TEMPERATURE_THRESHOLD_GPU_MAX",
    "mem_temp_max_c": "NVML_TEMPERATURE_THRESHOLD_MEM_MAX",
}

# (function, *args) -> value, or None when NVML cannot give it (logged once by the caller)
Optional = Callable[..., Any]


class HealthReads:
    """The health reads of one GpuReader; holds the per-GPU event sets and the PCIe pool."""

    def __init__(self, nvml: Any, clock: Callable[[], float] = time.time) -> None:
        self._nvml = nvml
        self._clock = clock
        self._xid_sets: dict[int, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._value_kinds = {
            getattr(nvml, name, -1): (attribute, bits)
            for name, attribute, bits in (
                ("NVML_VALUE_TYPE_DOUBLE", "dVal", 0),
                ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal", 32),
                ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal", 64),
                ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal", 64),
                ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal", 0),
                ("NVML_VALUE_TYPE_SIGNED_INT", "siVal", 0),
                ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal", 16),
            )
        }

    def cuda_version_call(self) -> Callable[[], int]:
        """Return NVML's call for the newest CUDA version the driver supports (12040: 12.4)."""
        return self._function("nvmlSystemGetCudaDriverVersion")

    # -- once per GPU ----------------------------------------------------------------------

    def limits(self, handle: Any, optional: Optional) -> GpuLimits:
        """Return what does not change while the session lasts."""
        nvml = self._nvml
        sm = optional(
            "max SM clock", self._function("nvmlDeviceGetMaxClockInfo"), handle, nvml.NVML_CLOCK_SM
        )
        mem = optional(
            "max memory clock",
            self._function("nvmlDeviceGetMaxClockInfo"),
            handle,
            nvml.NVML_CLOCK_MEM,
        )
        power = optional(
            "power limit range",
            self._function("nvmlDeviceGetPowerManagementLimitConstraints"),
            handle,
        )
        thresholds = {
            key: _u32(
                optional(
                    key.removesuffix("_c").replace("_", " "),
                    self._function("nvmlDeviceGetTemperatureThreshold"),
                    handle,
                    getattr(nvml, name),
                )
            )
            for key, name in THRESHOLDS.items()
            if hasattr(nvml, name)
        }
        ecc = optional("ECC mode", self._function("nvmlDeviceGetEccMode"), handle)
        return GpuLimits(
            max_sm_clock_mhz=_u32(sm),
            max_mem_clock_mhz=_u32(mem),
            power_limit_min_w=_milli(power[0]) if power is not None else None,
            power_limit_max_w=_milli(power[1]) if power is not None else None,
            **thresholds,
            pcie_max_gen=_u32(
                optional(
                    "max PCIe generation",
                    self._function("nvmlDeviceGetMaxPcieLinkGeneration"),
                    handle,
                )
            ),
            pcie_max_width=_u32(
                optional("max PCIe width", self._function("nvmlDeviceGetMaxPcieLinkWidth"), handle)
            ),
            nvlink_links=self._nvlink_links(handle),
            ecc_enabled=None if ecc is None else bool(ecc[0]),
        )

    def _nvlink_links(self, handle: Any) -> int | None:
        """Return how many NVLink links the GPU has; None without NVLink (not logged)."""
        nvml = self._nvml
        count = 0
        for link in range(getattr(nvml, "NVML_NVLINK_MAX_LINKS", 0)):
            try:
                nvml.nvmlDeviceGetNvLinkState(handle, link)
            except (nvml.NVMLError, AttributeError):
                break
            count += 1
        return count or None

    def watch_xids(self, index: int, handle: Any, optional: Optional) -> None:
        """Register the GPU for critical XID events on an event set of its own."""
        nvml = self._nvml
        calls = ("nvmlEventSetCreate", "nvmlDeviceRegisterEvents", "nvmlEventSetWait_v2")
        if index in self._xid_sets or not all(hasattr(nvml, call) for call in calls):
            return
        event_set = optional("XID events", self._function("nvmlEventSetCreate"))
        if event_set is None:
            return

        def register() -> bool:  # NVML answers None: True tells success from a failure
            nvml.nvmlDeviceRegisterEvents(handle, nvml.nvmlEventTypeXidCriticalError, event_set)
            return True

        if optional("XID events", register) is None:
            self._free(event_set)
            return
        self._xid_sets[index] = event_set

    # -- every tick --------------------------------------------------------------------------

    def start_pcie(self, gpus: list[tuple[Any, Optional]]) -> list[Future[Any]]:
        """Start reading the PCIe throughput (TX, RX) of every (handle, optional) at once."""
        nvml = self._nvml
        if not hasattr(nvml, "nvmlDeviceGetPcieThroughput"):
            return []
        if self._pool is None:
            self._pool = ThreadPoolExecutor(PCIE_POOL_THREADS, thread_name_prefix="pcie")
        return [
            self._pool.submit(
                optional, f"PCIe {name}", nvml.nvmlDeviceGetPcieThroughput, handle, counter
            )
            for handle, optional in gpus
            for name, counter in (
                ("TX", nvml.NVML_PCIE_UTIL_TX_BYTES),
                ("RX", nvml.NVML_PCIE_UTIL_RX_BYTES),
            )
        ]

    def health(
        self, handle: Any, limits: GpuLimits, pcie: tuple[Any, Any], optional: Optional
    ) -> GpuHealth:
        """Return one tick's health of a GPU; pcie: its (TX, RX) answers from start_pcie."""
        nvml = self._nvml
        reasons = optional(
            "clock-event reasons",
            self._function(
                "nvmlDeviceGetCurrentClocksEventReasons",
                "nvmlDeviceGetCurrentClocksThrottleReasons",
            ),
            handle,
        )
        power = optional(
            "power violation", self._function("nvmlDeviceGetViolationStatus"), handle,
            nvml.NVML_PERF_POLICY_POWER,
        )  # fmt: skip
        thermal = optional(
            "thermal violation", self._function("nvmlDeviceGetViolationStatus"), handle,
            nvml.NVML_PERF_POLICY_THERMAL,
        )  # fmt: skip
        enc = optional(
            "encoder utilization", self._function("nvmlDeviceGetEncoderUtilization"), handle
        )
        dec = optional(
            "decoder utilization", self._function("nvmlDeviceGetDecoderUtilization"), handle
        )
        return GpuHealth(
            clocks_event_reasons=_u64(reasons),
            power_violation_ns=_u64(power.violationTime) if power is not None else None,
            thermal_violation_ns=_u64(thermal.violationTime) if thermal is not None else None,
            pcie_link_gen=_u32(
                optional(
                    "PCIe generation", self._function("nvmlDeviceGetCurrPcieLinkGeneration"), handle
                )
            ),
            pcie_link_width=_u32(
                optional("PCIe width", self._function("nvmlDeviceGetCurrPcieLinkWidth"), handle)
            ),
            pcie_tx_kb_per_s=_u32(pcie[0]),
            pcie_rx_kb_per_s=_u32(pcie[1]),
            enc_util_pct=_pct(enc[0]) if enc is not None else None,
            dec_util_pct=_pct(dec[0]) if dec is not None else None,
            **self._fields(handle, limits.nvlink_links or 0, optional),
        )

    def _fields(self, handle: Any, links: int, optional: Optional) -> dict[str, Any]:
        """Return every counter of COUNTER_FIELDS and the NVLink sums, from one NVML call."""
        nvml = self._nvml
        keys = [key for key, name in COUNTER_FIELDS.items() if hasattr(nvml, name)]
        ids: list[Any] = [getattr(nvml, COUNTER_FIELDS[key]) for key in keys]
        nvlink = links > 0 and all(hasattr(nvml, n) for n in (NVLINK_STATE, NVLINK_TX, NVLINK_RX))
        if nvlink:
            for name in (NVLINK_STATE, NVLINK_TX, NVLINK_RX):
                ids.extend((getattr(nvml, name), link) for link in range(links))
        if not hasattr(nvml, "nvmlDeviceGetFieldValues"):
            return {}
        answers = optional("field values", self._function("nvmlDeviceGetFieldValues"), handle, ids)
        if answers is None:
            return {}
        values = [self._field_value(answer) for answer in answers]
        found: dict[str, Any] = {}
        for key, value in zip(keys, values, strict=False):
            found[key] = (None if value is None else bool(value)) if key in YES_NO_FIELDS else value
        if nvlink:
            rest = values[len(keys) :]
            states, tx, rx = rest[:links], rest[links : 2 * links], rest[2 * links : 3 * links]
            if None not in states:
                found["nvlink_links_active"] = sum(
                    1 for state in states if state == nvml.NVML_FEATURE_ENABLED
                )
            found["nvlink_tx_kib"] = _sum(tx)
            found["nvlink_rx_kib"] = _sum(rx)
        return found

    def _field_value(self, answer: Any) -> int | None:
        """Return one field's value, None where NVML could not give it."""
        if answer.nvmlReturn != self._nvml.NVML_SUCCESS:
            return None
        attribute, bits = self._value_kinds.get(answer.valueType, (None, 0))
        if attribute is None:
            return None
        value = getattr(answer.value, attribute)
        if bits == 0:  # signed or floating point: negative is NVML_VALUE_NOT_AVAILABLE
            return None if value < 0 else int(value)
        return None if value < 0 or value >= (1 << bits) - 1 else int(value)

    def xids(self, index: int, call: Callable[..., Any]) -> list[XidEvent]:
        """Return the XID errors NVML reported for the GPU since the last tick (no waiting)."""
        event_set = self._xid_sets.get(index)
        if event_set is None:
            return []
        nvml = self._nvml
        events = []
        for _ in range(MAX_XIDS_PER_TICK):
            try:
                data = call(nvml.nvmlEventSetWait_v2, event_set, 0)
            except nvml.NVMLError:  # NVML_ERROR_TIMEOUT: nothing more; any other: try next tick
                break
            if data.eventType & nvml.nvmlEventTypeXidCriticalError:
                events.append(
                    XidEvent(
                        ts=self._clock(),
                        code=int(data.eventData),
                        gpu_instance_id=_instance(data.gpuInstanceId),
                        compute_instance_id=_instance(data.computeInstanceId),
                    )
                )
        return events

    # -- session ---------------------------------------------------------------------------

    def forget(self) -> None:
        """Drop the event sets (a new session registers anew)."""
        for event_set in self._xid_sets.values():
            self._free(event_set)
        self._xid_sets.clear()

    def close(self) -> None:
        """Free the event sets and stop the PCIe pool."""
        self.forget()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _free(self, event_set: Any) -> None:
        with contextlib.suppress(self._nvml.NVMLError, AttributeError):
            self._nvml.nvmlEventSetFree(event_set)

    def _function(self, *names: str) -> Callable[..., Any]:
        """Return the first of NVML's functions by name that this pynvml has, else one that
        raises FunctionNotFound (as a newer pynvml does over an older driver)."""
        for name in names:
            function = getattr(self._nvml, name, None)
            if function is not None:
                return function
        nvml = self._nvml

        def missing(*_: Any) -> Any:
            raise nvml.NVMLError(nvml.NVML_ERROR_FUNCTION_NOT_FOUND)

        return missing


def _instance(value: int | None) -> int | None:
    return None if value is None or value == NO_INSTANCE else int(value)


def _sum(values: list[int | None]) -> int | None:
    return None if not values or None in values else sum(v for v in values if v is not None)
