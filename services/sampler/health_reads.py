"""Read a GPU's health through NVML: limits once, health fields and XID events every tick.

Called by GpuReader (services/sampler/nvml.py), through its error handling: a call the GPU or
the driver does not have (NotSupported, FunctionNotFound) is None, logged once; a lost GPU or a
lost session is raised as for any other metric. What NVML gives:

- limits (GpuLimits), read once per GPU and session: max clocks, power-limit range, temperature
  thresholds, PCIe link maximum, NVLink links that exist, ECC mode;
- health (GpuHealth) each tick: clock-event reasons, the current PCIe link (judged against the
  tick's utilization), encoder and decoder utilization (five calls); and at most every
  SLOW_READ_S (a tick between carries the last read; at the default 60 s interval every tick
  reads all): the power and thermal violation time (two calls) and every counter that has an
  NVML field (ECC totals, retired pages, remapped rows, PCIe replays, memory temperature, NVLink
  states and throughput) in one nvmlDeviceGetFieldValues call; an entry whose own return is not
  success, or is NVML_VALUE_NOT_AVAILABLE, is None;
- PCIe throughput, with the slow reads: NVML measures each direction over 20 ms, blocking; the
  two directions of every GPU due are read at once on a small pool of threads (ctypes lets go of
  the GIL), so a tick waits about 20 ms for all GPUs, not 40 ms per GPU;
- XID errors: one NVML event set per GPU, registered for critical XID errors when the GPU is
  first identified, drained without waiting (timeout 0) each tick, at most MAX_XIDS_PER_TICK a
  tick (the rest wait in NVML's queue for the next);
- GPU performance metrics (GPM, Hopper and newer): services/sampler/gpm_reads.py, two samples
  per GPU and one metrics call a tick, on the GPUs that have GPM only; on such a GPU in MIG mode
  also two samples and one metrics call per MIG instance (mig_activity).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from common.messages import GpuHealth, GpuLimits, XidEvent
from services.sampler.gpm_reads import GpmReads
from services.sampler.nvml_values import milli as _milli
from services.sampler.nvml_values import nvml_function
from services.sampler.nvml_values import pct as _pct
from services.sampler.nvml_values import u32 as _u32
from services.sampler.nvml_values import u64 as _u64

MAX_XIDS_PER_TICK = 64
XID_TS_STEP_S = 1e-6  # XIDs read in one instant get times this far apart (the key is per time)
PCIE_POOL_THREADS = 16
PCIE_WAIT_S = 1.0  # NVML measures over 20 ms: a read not back by then counts as failed
# What is read at most this often (faster ticks carry the last read): the violation times, the
# PCIe throughput, and the field values (ECC, retired pages, remapped rows, PCIe replays, memory
# temperature, NVLink). The clock-event reasons, PCIe link, encoder, decoder, GPM: every tick.
SLOW_READ_S = 5.0
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
    """The health reads of one GpuReader; holds the per-GPU event sets, GPM samples and the
    PCIe pool."""

    def __init__(
        self,
        nvml: Any,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._nvml = nvml
        self._clock = clock
        self._monotonic = monotonic
        self._slow: dict[int, tuple[float, dict[str, Any]]] = {}  # index: (read at, fields)
        self._pcie: dict[int, tuple[Any, Any]] = {}  # index: (TX, RX) as last read
        self._due: set[int] = set()  # the GPUs whose slow reads were due this tick
        self._xid_ts: dict[int, float] = {}  # index: the time given to its last XID
        self._functions: dict[tuple[str, ...], Callable[..., Any]] = {}  # a few names, fixed
        self._xid_sets: dict[int, Any] = {}
        self._pool: ThreadPoolExecutor | None = None
        self._gpm = GpmReads(nvml)
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

    def pcie(self, gpus: list[tuple[int, Any, Optional]]) -> dict[int, tuple[Any, Any]]:
        """Return the PCIe throughput (TX, RX) of every (index, handle, optional): read anew,
        all at once on the pool, for the GPUs whose slow reads were due this tick; the last
        read for the others."""
        nvml = self._nvml
        due = [gpu for gpu in gpus if gpu[0] in self._due or gpu[0] not in self._pcie]
        if due and hasattr(nvml, "nvmlDeviceGetPcieThroughput"):
            if self._pool is None:
                self._pool = ThreadPoolExecutor(PCIE_POOL_THREADS, thread_name_prefix="pcie")
            futures = [
                self._pool.submit(
                    optional, f"PCIe {name}", nvml.nvmlDeviceGetPcieThroughput, handle, counter
                )
                for _, handle, optional in due
                for name, counter in (
                    ("TX", nvml.NVML_PCIE_UTIL_TX_BYTES),
                    ("RX", nvml.NVML_PCIE_UTIL_RX_BYTES),
                )
            ]
            for n, (index, _, _) in enumerate(due):
                self._pcie[index] = (
                    _u32(_result(futures[2 * n])),
                    _u32(_result(futures[2 * n + 1])),
                )
        return {index: self._pcie.get(index, (None, None)) for index, _, _ in gpus}

    def health(
        self,
        index: int,
        handle: Any,
        limits: GpuLimits,
        optional: Optional,
    ) -> GpuHealth:
        """Return one tick's health of GPU index; its PCIe throughput is filled in by pcie()."""
        reasons = optional(
            "clock-event reasons",
            self._function(
                "nvmlDeviceGetCurrentClocksEventReasons",
                "nvmlDeviceGetCurrentClocksThrottleReasons",
            ),
            handle,
        )
        enc = optional(
            "encoder utilization", self._function("nvmlDeviceGetEncoderUtilization"), handle
        )
        dec = optional(
            "decoder utilization", self._function("nvmlDeviceGetDecoderUtilization"), handle
        )
        # the link as trained now, judged against this tick's utilization: every tick
        gen = self._function("nvmlDeviceGetCurrPcieLinkGeneration")
        width = self._function("nvmlDeviceGetCurrPcieLinkWidth")
        return GpuHealth(
            clocks_event_reasons=_u64(reasons),
            pcie_link_gen=_u32(optional("PCIe generation", gen, handle)),
            pcie_link_width=_u32(optional("PCIe width", width, handle)),
            enc_util_pct=_pct(enc[0]) if enc is not None else None,
            dec_util_pct=_pct(dec[0]) if dec is not None else None,
            **self._slow_reads(index, handle, limits.nvlink_links or 0, optional),
            **self._gpm.read(index, handle, optional),
        )

    def mig_activity(
        self, index: int, handle: Any, instances: list[tuple[int, str]], optional: Optional
    ) -> dict[int, float | None]:
        """Return the graphics activity (percent) of each MIG instance by GPU instance id, from
        GPM (services/sampler/gpm_reads.py); call it after health() of the same GPU."""
        return self._gpm.read_mig(index, handle, instances, optional)

    def _slow_reads(
        self, index: int, handle: Any, links: int, optional: Optional
    ) -> dict[str, Any]:
        """Return the GPU's slow reads: read anew when SLOW_READ_S have passed since the last
        time, which makes them due this tick (pcie() then reads the throughput too)."""
        now_s = self._monotonic()
        held = self._slow.get(index)
        if held is not None and now_s - held[0] < SLOW_READ_S:
            self._due.discard(index)
            return held[1]
        violation = self._function("nvmlDeviceGetViolationStatus")
        power = optional("power violation", violation, handle, self._nvml.NVML_PERF_POLICY_POWER)
        thermal = optional(
            "thermal violation", violation, handle, self._nvml.NVML_PERF_POLICY_THERMAL
        )
        values = {
            "power_violation_ns": None if power is None else _u64(power.violationTime),
            "thermal_violation_ns": None if thermal is None else _u64(thermal.violationTime),
            **self._fields(handle, links, optional),
        }
        self._slow[index] = (now_s, values)
        self._due.add(index)
        return values

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

    def watching(self, index: int) -> bool:
        """Return whether the GPU's XIDs are watched (its event set registered)."""
        return index in self._xid_sets

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
            except Exception:  # a timeout: nothing more; the GPU or session lost: next tick's
                break  # reads find it; what was taken is kept either way
            if data.eventType & nvml.nvmlEventTypeXidCriticalError:
                # each event its own time, so that two of one code read together stay two
                ts = max(self._clock(), self._xid_ts.get(index, 0.0) + XID_TS_STEP_S)
                self._xid_ts[index] = ts
                events.append(
                    XidEvent(
                        ts=ts,
                        code=int(data.eventData),
                        gpu_instance_id=_instance(data.gpuInstanceId),
                        compute_instance_id=_instance(data.computeInstanceId),
                    )
                )
        return events

    # -- session ---------------------------------------------------------------------------

    def lost(self, index: int) -> None:
        """Free what is held for a GPU that was lost (its GPM samples, its last slow reads)."""
        self._gpm.forget(index)
        self._slow.pop(index, None)
        self._pcie.pop(index, None)
        self._due.discard(index)

    def forget(self) -> None:
        """Drop the event sets and GPM samples (a new session registers anew)."""
        for event_set in self._xid_sets.values():
            self._free(event_set)
        self._xid_sets.clear()
        self._gpm.forget_all()
        self._slow.clear()
        self._pcie.clear()
        self._due.clear()

    def close(self) -> None:
        """Free the event sets and GPM samples, and stop the PCIe pool."""
        self.forget()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _free(self, event_set: Any) -> None:
        with contextlib.suppress(self._nvml.NVMLError, AttributeError):
            self._nvml.nvmlEventSetFree(event_set)

    def _function(self, *names: str) -> Callable[..., Any]:
        """Return the first of NVML's functions by name (nvml_values.nvml_function), looked up
        once: the per-tick reads ask for the same few."""
        found = self._functions.get(names)
        if found is None:
            found = self._functions[names] = nvml_function(self._nvml, *names)
        return found


def _result(future: Future[Any]) -> Any:
    """Return a pool read's answer, None when it failed or took longer than PCIE_WAIT_S."""
    try:
        return future.result(timeout=PCIE_WAIT_S)
    except Exception:  # the read failed, or FutureTimeout
        return None


def _instance(value: int | None) -> int | None:
    return None if value is None or value == NO_INSTANCE else int(value)


def _sum(values: list[int | None]) -> int | None:
    return None if not values or None in values else sum(v for v in values if v is not None)
