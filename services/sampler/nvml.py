"""Read every GPU through NVML once per tick; the only module that imports `pynvml`.

The `nvml` object handed to GpuReader is the real `pynvml` module or SimulatedNvml (same names,
shapes and error classes). Errors, as nvitop handles them:

- a metric raising NotSupported (or any per-call error) is None, logged once per GPU and metric;
  it never costs the rest of the reading;
- NVML_VALUE_NOT_AVAILABLE (all ones of the field's width, or -1) is None, never 0 nor the huge
  number: every conversion goes through _u32/_u64;
- a GPU raising GpuIsLost (or giving no handle) is in error for that tick; the others go on. One
  lost before it was identified is in every tick with what NVML still gives (PCI bus id, UUID,
  name, "" when none); a UUID NVML cannot give becomes a stable key, "unread-" + a UUID from the
  host and the PCI bus id (or the index): a new GPU to the writer and the web, whose earlier
  readings stay under its real UUID;
- a driver-level error (uninitialised, not loaded, library gone, RM mismatch) ends the session;
  it is re-initialised with exponential backoff while ticks carry the error.

Processes (`nvidia-smi --query-compute-apps`):

- the compute and graphics lists, each from the newest call the driver has (_v3, _v2, then the
  unversioned one; remembered per GPU), resolved through /proc by ProcResolver;
- a process in both lists is listed once, as "compute", with the compute entry's memory (else
  the graphics entry's); usedGpuMemory NVML cannot tell is None;
- an unreadable compute list makes the processes None (unknown, logged once), never []; an
  unsupported graphics list means no graphics processes.

Health (services/sampler/health_reads.py): the GPU's limits once per session, its health fields,
GPM metrics (services/sampler/gpm_reads.py) and XID events every tick, its PCIe throughput on a
pool of threads after the other reads.

MIG: on a GPU with MIG enabled each MIG device is read (uuid, name, memory, its GPU and compute
instance ids, its profile from its name; utilization None, as NVML gives none per MIG device),
and the processes come from the MIG devices' own lists, which need no privileges, unlike the
whole GPU's. On a GPU with GPM each MIG instance's graphics activity comes from GPM instead.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from common.config import Config
from common.messages import GpuHealth, GpuLimits, GpuProcess, GpuReading, MigDevice, XidEvent
from services.sampler.health_reads import HealthReads
from services.sampler.nvml_values import add as _add
from services.sampler.nvml_values import byte_count as _bytes
from services.sampler.nvml_values import mig_profile as _mig_profile
from services.sampler.nvml_values import nvml_function
from services.sampler.nvml_values import pct as _pct
from services.sampler.nvml_values import u32 as _u32
from services.sampler.nvml_values import u64 as _u64
from services.sampler.procfs import ProcResolver

log = logging.getLogger(__name__)

# NVML errors (pynvml's names) after which the whole session is gone, not one GPU or metric.
DRIVER_LEVEL_ERRORS = (
    "NVML_ERROR_UNINITIALIZED",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
)
GPU_LOST_ERRORS = ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_RESET_REQUIRED")
# NVML errors at start that mean NVML cannot run on this machine at all.
UNAVAILABLE_ERRORS = ("NVML_ERROR_DRIVER_NOT_LOADED", "NVML_ERROR_LIBRARY_NOT_FOUND")
UNREAD_UUID_PREFIX = "unread-"  # the key of a GPU whose UUID NVML cannot give
UNREAD_UUID_NAMESPACE = uuid.UUID("6f1d6c9e-5b7a-4c55-9a0e-2d8f3f1c7a41")  # this project's own
ERROR_TEXT_CHARS = 256  # the codec's limit on text
REINIT_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
DEFAULT_PROC_ROOT = Path("/proc")
# newest first: an older driver's library lacks the newer names (FunctionNotFound)
PROCESS_CALLS = {
    "compute": (
        "nvmlDeviceGetComputeRunningProcesses_v3",
        "nvmlDeviceGetComputeRunningProcesses_v2",
        "nvmlDeviceGetComputeRunningProcesses",
    ),
    "graphics": (
        "nvmlDeviceGetGraphicsRunningProcesses_v3",
        "nvmlDeviceGetGraphicsRunningProcesses_v2",
        "nvmlDeviceGetGraphicsRunningProcesses",
    ),
}


class NvmlUnavailableError(RuntimeError):
    """NVML cannot be used at all on this machine (no library or no driver)."""


class _DriverLevelError(Exception):
    """Raised inside a tick when the NVML session must be re-initialised."""


class _GpuLostError(Exception):
    """Raised inside a GPU's reading when the device itself is gone."""


def load_nvml(config: Config) -> Any:
    """Return the NVML module for config.source: `pynvml`, or a SimulatedNvml instance.

    Simulated GPUs with PCW_PROC_ROOT left at /proc keep a fake /proc tree for their processes
    in a temporary folder (removed when the sampler exits): the PIDs they make up must not name
    this machine's real processes.
    """
    if config.source == "simulated":
        from services.sampler.simulated_nvml import SimulatedNvml
        from services.sampler.simulated_procfs import FakeProcTree

        return SimulatedNvml(
            config.sim_gpus,
            host=config.host_name,
            names=config.sim_names,
            mig_gpus=config.sim_mig_gpus,
            idle_gpus=config.sim_idle_gpus,
            process_names=config.sim_process_names,
            lost_gpus=config.sim_lost_gpus,
            hot_gpus=config.sim_hot_gpus,
            remap_gpus=config.sim_remap_gpus,
            degraded_link_gpus=config.sim_degraded_link_gpus,
            xid_gpus=config.sim_xid_gpus,
            proc_tree=FakeProcTree() if config.proc_root == DEFAULT_PROC_ROOT else None,
        )
    try:
        import pynvml
    except ImportError as error:
        raise NvmlUnavailableError(f"the nvidia-ml-py package is missing ({error})") from None
    return pynvml


def process_resolver(config: Config, nvml: Any) -> ProcResolver:
    """Return the resolver of the PIDs that nvml lists: its own fake /proc, or PCW_PROC_ROOT."""
    return _resolver(nvml, config.proc_root)


def _resolver(nvml: Any, proc_root: Path) -> ProcResolver:
    """Return a resolver through nvml's own fake /proc where it keeps one, else proc_root."""
    tree = getattr(nvml, "proc_tree", None)
    return ProcResolver(tree.proc_root if tree is not None else proc_root)


def _codes(nvml: Any, names: tuple[str, ...]) -> frozenset[int]:
    """Return the values of pynvml's error names in the nvml module (pynvml or the simulation)."""
    return frozenset(getattr(nvml, name) for name in names)


def _text(value: str | bytes) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


@dataclass(frozen=True)
class GpuIdentity:
    """What does not change while the GPU is attached."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str | None

    def reading(self, **values: Any) -> GpuReading:
        """Return a reading of this GPU with the given metrics or error."""
        return GpuReading(
            index=self.index, uuid=self.uuid, name=self.name, pci_bus_id=self.pci_bus_id, **values
        )


@dataclass(frozen=True)
class TickReading:
    """One tick's result: the driver version, every GPU, and an NVML-wide error if any."""

    driver_version: str | None
    gpus: list[GpuReading]
    error: str | None
    cuda_version: str | None = None


class GpuReader:
    """Read all GPUs of the host; keeps NVML's session, identities, and what was logged."""

    def __init__(
        self,
        nvml: Any,
        monotonic: Callable[[], float] = time.monotonic,
        resolver: ProcResolver | None = None,
        host: str = "",
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._nvml = nvml
        self._host = host  # keys a GPU whose UUID NVML cannot give
        self._monotonic = monotonic
        self._resolver = resolver if resolver is not None else _resolver(nvml, DEFAULT_PROC_ROOT)
        self._process_call: dict[tuple[int, str], int] = {}  # (gpu, kind) -> PROCESS_CALLS index
        self._no_mig: set[int] = set()  # GPUs (or a driver) without MIG: not asked again
        # pynvml's unversioned call raises this (not an NVMLError) when the library lacks v3
        self._mismatch = getattr(nvml, "NVMLLibraryMismatchError", ())
        self._driver_level = _codes(nvml, DRIVER_LEVEL_ERRORS)
        self._gpu_lost = _codes(nvml, GPU_LOST_ERRORS)
        self._unavailable = _codes(nvml, UNAVAILABLE_ERRORS)
        self._unsupported = _codes(
            nvml, ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")
        )
        self._session = False
        self._driver_version: str | None = None
        self._identities: dict[int, GpuIdentity] = {}
        self._unidentified: dict[int, GpuIdentity] = {}  # lost before identified: what NVML gave
        self._memory_v2: dict[int, bool] = {}
        self._health = HealthReads(nvml, clock=wall, monotonic=monotonic)  # wall: XIDs' times
        self._limits: dict[int, GpuLimits] = {}
        self._tick_handles: dict[int, Any] = {}  # GPUs read fine this tick: their handles
        self._cuda_version: str | None = None
        self._logged: set[tuple[str, str]] = set()
        self._lost_logged: set[int] = set()
        self._failures = 0
        self._retry_at = 0.0
        self._last_error: str | None = None

    def start(self) -> None:
        """Open the NVML session; raise NvmlUnavailableError if NVML cannot run here at all."""
        try:
            self._open()
        except self._nvml.NVMLError as error:
            if error.value in self._unavailable:
                raise NvmlUnavailableError(str(error)) from None
            self._session_failed(f"NVML init failed: {error}")

    def read(self) -> TickReading:
        """Read every GPU once; never raises for an NVML error."""
        if not self._session and self._monotonic() >= self._retry_at:
            try:
                self._open()
                log.info("NVML session re-opened after %d failed attempts", self._failures)
                # forget the outage, so that the next one is logged even if its text is the same
                self._failures, self._last_error = 0, None
            except self._nvml.NVMLError as error:
                self._session_failed(f"NVML init failed: {error}")
        if not self._session:
            return self._errored_tick()
        self._tick_handles.clear()
        try:
            gpus = [self._read_gpu(index) for index in range(self._device_count())]
        except _DriverLevelError as error:
            self._session = False
            self._session_failed(f"NVML session lost: {error}")
            return self._errored_tick()
        return TickReading(self._driver_version, self._with_pcie(gpus), None, self._cuda_version)

    def _errored_tick(self) -> TickReading:
        return TickReading(
            self._driver_version, self._errored_gpus(), self._last_error, self._cuda_version
        )

    def _with_pcie(self, gpus: list[GpuReading]) -> list[GpuReading]:
        """Return gpus with the PCIe throughput of each one read fine (health_reads.pcie)."""
        handled = [(i, gpu) for i, gpu in enumerate(gpus) if gpu.index in self._tick_handles]
        values = self._health.pcie(
            [
                (gpu.index, self._tick_handles[gpu.index], self._quiet_optional(gpu.uuid))
                for _, gpu in handled
            ]
        )
        gpus = list(gpus)
        for i, gpu in handled:
            tx, rx = values[gpu.index]
            if gpu.health is not None and (tx, rx) != (None, None):
                health = _replace(gpu.health, pcie_tx_kb_per_s=tx, pcie_rx_kb_per_s=rx)
                gpus[i] = _replace(gpu, health=health)
        return gpus

    def _quiet_optional(self, uuid: str) -> Callable[..., Any]:
        """Return _optional for a pool thread: a lost GPU or session is for the next tick."""

        def optional(metric: str, function: Callable[..., Any], *args: Any) -> Any:
            try:
                return self._optional(uuid, metric, function, *args, unsupported_level=logging.INFO)
            except (_DriverLevelError, _GpuLostError):
                return None

        return optional

    def close(self) -> None:
        """Free what NVML holds for the reader (while the session lasts), then end the session."""
        self._health.close()
        if self._session:
            try:
                self._nvml.nvmlShutdown()
            except self._nvml.NVMLError as error:
                log.warning("nvmlShutdown failed: %s", error)
            self._session = False

    # -- session ---------------------------------------------------------------------------

    def _open(self) -> None:
        self._nvml.nvmlInit()
        self._session = True
        self._identities.clear()
        self._unidentified.clear()
        self._memory_v2.clear()
        self._limits.clear()
        self._health.forget()
        self._process_call.clear()
        self._no_mig.clear()
        try:
            self._driver_version = _text(self._nvml.nvmlSystemGetDriverVersion())
        except self._nvml.NVMLError as error:
            log.warning("driver version not available: %s", error)
        cuda = _u32(self._optional("(driver)", "CUDA version", self._health.cuda_version_call()))
        self._cuda_version = None if cuda is None else f"{cuda // 1000}.{cuda % 1000 // 10}"

    def _session_failed(self, message: str) -> None:
        message = message[:ERROR_TEXT_CHARS]
        delay_s = REINIT_BACKOFF_S[min(self._failures, len(REINIT_BACKOFF_S) - 1)]
        self._failures += 1
        self._retry_at = self._monotonic() + delay_s
        if message != self._last_error:
            log.error("%s; retrying with backoff (next in %.0f s)", message, delay_s)
        self._last_error = message

    def _errored_gpus(self) -> list[GpuReading]:
        """Return the last known GPUs, each marked with the NVML-wide error."""
        return [identity.reading(error=self._last_error) for identity in self._known_identities()]

    def _known_identities(self) -> list[GpuIdentity]:
        known = {**self._unidentified, **self._identities}
        return [known[index] for index in sorted(known)]

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call NVML, turning session-level and device-level errors into our own."""
        try:
            return function(*args, **kwargs)
        except self._nvml.NVMLError as error:
            if error.value in self._driver_level:
                raise _DriverLevelError(str(error)) from None
            if error.value in self._gpu_lost:
                raise _GpuLostError(str(error)) from None
            raise

    def _device_count(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetCount))

    # -- one GPU -----------------------------------------------------------------------------

    def _read_gpu(self, index: int) -> GpuReading:
        # The XIDs first: after XID 79 (fallen off the bus) every device call fails, but the
        # event is still in the GPU's event set, which needs no device call to drain.
        watched = self._health.watching(index)
        xid_events = self._health.xids(index, self._call)
        try:
            handle = self._call(self._nvml.nvmlDeviceGetHandleByIndex, index)
            identity = self._identity(index, handle)
            if not watched:  # registered just now, by its identification
                xid_events = self._health.xids(index, self._call)
            reading = self._metrics(identity, handle, xid_events)
        except _GpuLostError as error:
            return _replace(self._lost(index, str(error)), xid_events=xid_events)
        except self._nvml.NVMLError as error:
            return _replace(self._lost(index, f"NVML error: {error}"), xid_events=xid_events)
        if index in self._lost_logged:
            log.info("GPU %d (%s) answers again", index, identity.uuid)
            self._lost_logged.discard(index)
        self._unidentified.pop(index, None)
        return reading

    def _lost(self, index: int, message: str) -> GpuReading:
        message = message[:ERROR_TEXT_CHARS]
        self._health.lost(index)
        identity = self._identities.get(index) or self._unidentified.get(index)
        if identity is None:  # lost before it was ever identified: take what NVML still gives
            identity = self._unidentified[index] = self._partial_identity(index)
        if index not in self._lost_logged:
            log.error("GPU %d (%s at %s): %s", index, identity.uuid, identity.pci_bus_id, message)
            self._lost_logged.add(index)
        return identity.reading(error=message)

    def _partial_identity(self, index: int) -> GpuIdentity:
        """Return what NVML still gives of a GPU in error: each part that fails is left out."""
        nvml = self._nvml

        def part(function: Callable[..., Any], *args: Any) -> Any:
            try:
                return self._call(function, *args)
            except (nvml.NVMLError, _GpuLostError):
                return None

        handle = part(nvml.nvmlDeviceGetHandleByIndex, index)
        pci = uuid_text = name = None
        if handle is not None:
            pci = part(nvml.nvmlDeviceGetPciInfo, handle)
            uuid_text = part(nvml.nvmlDeviceGetUUID, handle)
            name = part(nvml.nvmlDeviceGetName, handle)
        pci_bus_id = _text(pci.busId) if pci is not None else None
        return GpuIdentity(
            index=index,
            uuid=_text(uuid_text) if uuid_text else self._unread_uuid(index, pci_bus_id),
            name=_text(name)[:ERROR_TEXT_CHARS] if name is not None else "",
            pci_bus_id=pci_bus_id,
        )

    def _unread_uuid(self, index: int, pci_bus_id: str | None) -> str:
        """Return the stable key of a GPU whose UUID NVML cannot give (see the module's text)."""
        where = f"pci {pci_bus_id}" if pci_bus_id else f"index {index}"
        return UNREAD_UUID_PREFIX + str(uuid.uuid5(UNREAD_UUID_NAMESPACE, f"{self._host}/{where}"))

    def _identity(self, index: int, handle: Any) -> GpuIdentity:
        identity = self._identities.get(index)
        if identity is None:
            nvml = self._nvml
            pci = self._optional(f"gpu{index}", "pci_bus_id", nvml.nvmlDeviceGetPciInfo, handle)
            identity = GpuIdentity(
                index=index,
                uuid=_text(self._call(nvml.nvmlDeviceGetUUID, handle)),
                name=_text(self._call(nvml.nvmlDeviceGetName, handle))[:ERROR_TEXT_CHARS],
                pci_bus_id=_text(pci.busId) if pci is not None else None,
            )
            self._identities[index] = identity
            optional = self._optional_for(identity.uuid)
            self._limits[index] = self._health.limits(handle, optional)
            self._health.watch_xids(index, handle, optional)
            log.info(
                "GPU %d: %s %s at %s", index, identity.name, identity.uuid, identity.pci_bus_id
            )
        return identity

    def _optional_for(self, uuid: str) -> Callable[..., Any]:
        """Return _optional for one GPU's health: (metric, function, *args) -> value or None.

        Health is read from every GPU, and many have no ECC, NVLink or memory sensor: a call the
        GPU does not support is logged once at INFO, not as a warning.
        """

        def optional(metric: str, function: Callable[..., Any], *args: Any) -> Any:
            return self._optional(uuid, metric, function, *args, unsupported_level=logging.INFO)

        return optional

    def _optional(
        self,
        uuid: str,
        metric: str,
        function: Callable[..., Any],
        *args: Any,
        unsupported_level: int = logging.WARNING,
    ) -> Any:
        """Return function(*args), or None when NVML cannot give it (logged once)."""
        try:
            return self._call(function, *args)
        except self._nvml.NVMLError as error:
            level = logging.WARNING
            if error.value == self._nvml.NVML_ERROR_NOT_SUPPORTED:
                level = unsupported_level
            self._optional_failed(uuid, metric, error, level=level)
            return None

    def _optional_failed(
        self,
        uuid: str,
        metric: str,
        error: Exception | None,
        reported: str = "reported as null",
        level: int = logging.WARNING,
    ) -> None:
        """Log, once per GPU and metric, that NVML could not give it."""
        if (uuid, metric) not in self._logged:
            self._logged.add((uuid, metric))
            log.log(level, "GPU %s: %s not available (%s); %s", uuid, metric, error, reported)

    def _memory(self, identity: GpuIdentity, handle: Any) -> dict[str, int | None]:
        """Return the memory fields of a reading, from the v2 struct where the driver has it.

        v2 gives used (allocated), free and reserved (by the driver and firmware), which add up
        to total. v1, all an older driver has, counts the reserved memory in used and does not
        tell it apart: reserved is then None; its free is the same as v2's.
        """
        nvml = self._nvml
        info, v2 = None, False
        if self._memory_v2.get(identity.index, True):
            try:
                info = self._call(nvml.nvmlDeviceGetMemoryInfo, handle, version=nvml.nvmlMemory_v2)
                self._memory_v2[identity.index] = v2 = True
            except (nvml.NVMLError, TypeError, AttributeError):
                info = self._optional(identity.uuid, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
                # only a driver that answers v1 but not v2 lacks v2; a passing failure of both
                # must not switch this GPU for good to v1, whose `used` includes reserved memory
                if info is not None:
                    self._memory_v2[identity.index] = False
        else:
            info = self._optional(identity.uuid, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        if info is None:
            return {}
        return {
            "mem_used_bytes": _bytes(info.used),
            "mem_total_bytes": _bytes(info.total),
            "mem_free_bytes": _bytes(info.free),
            "mem_reserved_bytes": _bytes(info.reserved) if v2 else None,
        }

    def _metrics(
        self, identity: GpuIdentity, handle: Any, xid_events: list[XidEvent]
    ) -> GpuReading:
        """Read each metric once; unit conversions from NVML's units happen here."""
        nvml, uuid = self._nvml, identity.uuid

        def get(metric: str, function: Callable[..., Any], *args: Any) -> Any:
            return self._optional(uuid, metric, function, handle, *args)

        util = get("utilization", nvml.nvmlDeviceGetUtilizationRates)
        power_mw = _u32(get("power_w", nvml.nvmlDeviceGetPowerUsage))
        limit_mw = _u32(get("power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit))
        energy_mj = _u64(get("energy_j", nvml.nvmlDeviceGetTotalEnergyConsumption))
        pstate = _u32(get("pstate", nvml.nvmlDeviceGetPerformanceState))
        mig_handles = self._mig_handles(identity, handle)
        mig_devices = [
            device
            for slot, mig in mig_handles
            if (device := self._mig_device(identity, slot, mig)) is not None
        ]
        processes = self._processes(identity, [mig for _, mig in mig_handles] or [handle])
        sm_clock = get("sm_clock_mhz", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM)
        mem_clock = get("mem_clock_mhz", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM)
        limits = self._limits.get(identity.index, _NO_LIMITS)
        health = self._health.health(identity.index, handle, limits, self._optional_for(uuid))
        if mig_devices:
            mig_devices = self._with_mig_activity(identity, handle, mig_devices)
        self._tick_handles[identity.index] = handle
        return identity.reading(
            util_gpu_pct=_pct(util.gpu) if util is not None else None,
            util_mem_pct=_pct(util.memory) if util is not None else None,
            **self._memory(identity, handle),
            temp_c=_u32(get("temp_c", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU)),
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            energy_j=energy_mj / 1000 if energy_mj is not None else None,
            fan_pct=_pct(get("fan_pct", nvml.nvmlDeviceGetFanSpeed)),
            sm_clock_mhz=_u32(sm_clock),
            mem_clock_mhz=_u32(mem_clock),
            pstate=None if pstate == nvml.NVML_PSTATE_UNKNOWN else pstate,
            processes=processes,
            mig_devices=mig_devices,
            health=None if health == _NO_HEALTH else health,
            limits=None if limits == _NO_LIMITS else limits,
            xid_events=xid_events,
        )

    # -- processes ---------------------------------------------------------------------------

    def _processes(self, identity: GpuIdentity, handles: list[Any]) -> list[GpuProcess] | None:
        """Return the processes on the GPU (on all its MIG devices), or None when unknown."""
        merged: dict[int, list[Any]] = {}  # pid -> [kind, used bytes or None]
        for kind in ("compute", "graphics"):
            on_gpu: dict[int, int | None] = {}
            for handle in handles:
                entries = self._process_list(identity, kind, handle)
                if entries is None:
                    return None
                on_handle: dict[int, int | None] = {}
                for entry in entries:  # a PID listed twice on one device counts once
                    on_handle.setdefault(int(entry.pid), _bytes(entry.usedGpuMemory))
                for pid, used in on_handle.items():  # on two MIG devices: both shares
                    on_gpu[pid] = _add(on_gpu[pid], used) if pid in on_gpu else used
            for pid, used in on_gpu.items():
                entry = merged.get(pid)
                if entry is None:
                    merged[pid] = [kind, used]
                elif entry[1] is None:  # also a graphics process: compute stays the kind
                    entry[1] = used
        return [self._process(pid, kind, used) for pid, (kind, used) in sorted(merged.items())]

    def _process(self, pid: int, kind: str, used: int | None) -> GpuProcess:
        info = self._resolver.resolve(pid)
        return GpuProcess(
            pid=pid,
            kind=kind,
            used_mem_bytes=used,
            visible=info.visible,
            name=info.name,
            cmdline=info.cmdline,
            user=info.user,
            container_id=info.container_id,
            container_name=info.container_name,
        )

    def _process_list(self, identity: GpuIdentity, kind: str, handle: Any) -> list[Any] | None:
        """Return NVML's list of one kind from the newest call that answers, or None."""
        nvml, key = self._nvml, (identity.index, kind)
        calls = PROCESS_CALLS[kind]
        error: Exception | None = None
        for level in range(self._process_call.get(key, 0), len(calls)):
            function = getattr(nvml, calls[level], None)
            if function is None:  # an older pynvml
                continue
            try:
                entries = self._call(function, handle)
            except nvml.NVMLError as failed:
                error = failed
                if failed.value in self._unsupported:
                    continue
                break
            except self._mismatch as failed:
                error = failed
                continue
            self._process_call[key] = level
            return list(entries)
        if kind == "graphics" and getattr(error, "value", None) == nvml.NVML_ERROR_NOT_SUPPORTED:
            return []  # a GPU without graphics runs no graphics process
        self._optional_failed(
            identity.uuid, f"{kind} processes", error, "the process list is reported as unknown"
        )
        return None

    # -- MIG -------------------------------------------------------------------------------

    def _mig_handles(self, identity: GpuIdentity, handle: Any) -> list[tuple[int, Any]]:
        """Return (slot, handle) of each MIG device; [] when MIG is off or not supported."""
        nvml = self._nvml
        if identity.index in self._no_mig or not hasattr(nvml, "nvmlDeviceGetMigMode"):
            return []
        try:
            current_mode = self._call(nvml.nvmlDeviceGetMigMode, handle)[0]
        except nvml.NVMLError as error:
            if error.value in self._unsupported:
                self._no_mig.add(identity.index)  # no MIG on this GPU, or on this driver
            else:
                self._optional_failed(identity.uuid, "MIG mode", error)
            return []
        if current_mode != nvml.NVML_DEVICE_MIG_ENABLE:
            return []
        slots = self._optional(
            identity.uuid, "MIG devices", nvml.nvmlDeviceGetMaxMigDeviceCount, handle
        )
        handles = []
        for slot in range(slots or 0):
            try:
                handles.append(
                    (slot, self._call(nvml.nvmlDeviceGetMigDeviceHandleByIndex, handle, slot))
                )
            except nvml.NVMLError as error:
                if error.value != nvml.NVML_ERROR_NOT_FOUND:  # an empty slot is not news
                    self._optional_failed(identity.uuid, f"MIG device {slot}", error)
        return handles

    def _mig_device(self, identity: GpuIdentity, slot: int, handle: Any) -> MigDevice | None:
        """Return one MIG device's reading, or None (logged once) when it cannot be named.

        Its GPU and compute instance ids and its profile are read every tick, as its UUID is:
        a MIG layout can change under a running sampler. A failing id is None, logged once per
        GPU at INFO; a profile the name does not end with, None, logged once per GPU.
        """
        nvml = self._nvml
        try:
            uuid = _text(self._call(nvml.nvmlDeviceGetUUID, handle))
            name = _text(self._call(nvml.nvmlDeviceGetName, handle))[:ERROR_TEXT_CHARS]
        except nvml.NVMLError as error:
            self._optional_failed(identity.uuid, f"MIG device {slot}", error)
            return None
        optional = self._optional_for(identity.uuid)
        gpu_instance = optional(
            "MIG GPU instance id", nvml_function(nvml, "nvmlDeviceGetGpuInstanceId"), handle
        )
        compute_instance = optional(
            "MIG compute instance id", nvml_function(nvml, "nvmlDeviceGetComputeInstanceId"), handle
        )
        profile = _mig_profile(name)
        if profile is None:
            self._optional_failed(
                identity.uuid,
                "MIG profile",
                ValueError(f"not in the name {name!r}"),
                level=logging.INFO,
            )
        memory = self._optional(uuid, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
        try:  # NVML gives no utilization per MIG device: n/a, and no warning for it
            util = self._call(nvml.nvmlDeviceGetUtilizationRates, handle)
        except nvml.NVMLError as error:
            if error.value != nvml.NVML_ERROR_NOT_SUPPORTED:
                self._optional_failed(uuid, "utilization", error)
            util = None
        return MigDevice(
            index=slot,
            uuid=uuid,
            name=name,
            mem_used_bytes=_bytes(memory.used) if memory is not None else None,
            mem_total_bytes=_bytes(memory.total) if memory is not None else None,
            util_gpu_pct=_pct(util.gpu) if util is not None else None,
            gpu_instance_id=_u32(gpu_instance),
            compute_instance_id=_u32(compute_instance),
            profile=profile,
        )

    def _with_mig_activity(
        self, identity: GpuIdentity, handle: Any, devices: list[MigDevice]
    ) -> list[MigDevice]:
        """Return the MIG devices with their GPU instance's graphics activity where GPM gave it."""
        instances = [
            (device.gpu_instance_id, device.uuid)
            for device in devices
            if device.gpu_instance_id is not None
        ]
        activity = self._health.mig_activity(
            identity.index, handle, instances, self._optional_for(identity.uuid)
        )
        if not activity:
            return devices
        return [
            _replace(device, gr_engine_active_pct=found)
            if (found := activity.get(device.gpu_instance_id)) is not None
            else device
            for device in devices
        ]


_NO_LIMITS = GpuLimits()
_NO_HEALTH = GpuHealth()


def _replace(struct: Any, **changes: Any) -> Any:
    """Return a copy of a frozen msgspec struct with changes."""
    return msgspec.structs.replace(struct, **changes)
