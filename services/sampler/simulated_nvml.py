"""Simulated GPUs: a stand-in for the `pynvml` module, for machines without an NVIDIA GPU.

- Same names, argument order, return shapes (values in NVML's units) and error classes as the
  subset of pynvml the reader calls, so the sampler's NVML code runs unchanged over it.
- Load: per GPU a training-like cycle (ramp, train with jitter, idle, repeat); temperature and
  power follow it, memory fills while training. Only the GeForce card reports its fan.
- Processes (`processes`): a training job per GPU follows the cycle; an evaluation job runs
  mid-training (a graphics process on the GeForce card; on every fourth GPU from index 1 a PID
  of another PID namespace, not in /proc). PIDs are deterministic and come back, with another
  start time, 200 cycles later. Given a folder, a fake /proc tree (simulated_procfs) resolves
  them to names, users and containers.
- `mig_gpus`: MIG mode with three MIG devices (1g, 2g, 3g in slots 0, 1, 3 of 7), each with its
  own job; an A100 or H100 unless `names` names it. No utilization on a MIG device or its
  parent; the parent's process lists need privileges (its MIG devices answer instead).
- `idle_gpus` (not in MIG mode): carol's forgotten notebook holds a quarter of the memory (same
  PID and start time always) at 0% utilization.
- Memory as the v2 struct reports it: total = reserved (`reserved_mib`: 1 GiB on the H100) +
  used + free; the v1 struct counts reserved in `used` and has no `reserved`.
- `lost_gpus`: fell off the bus before the start; every call raises GpuIsLost except the handle
  and PCI info, so the sampler sees index and PCI bus id, never UUID or name.
- Health (simulated_health): clock-event reasons and violation time, ECC, remapped rows or
  retired pages, PCIe, NVLink, field values, encoder/decoder, limits and XID events, tied to
  the load. `hot_gpus` run hot enough for thermal slowdown; `remap_gpus` have two uncorrectable
  ECC errors and rows (or pages) pending remapping; `degraded_link_gpus` train their PCIe link
  at x8; `xid_gpus` hit an application XID every few busy minutes. The V100 (EXTRA_MODELS) is
  only simulated where `names` names it.
- GPM (simulated_gpm): the H100's performance metrics (engine, SM, tensor, DRAM and FP pipe
  activity, PCIe bytes) from two samples, tied to the load, and in MIG mode each instance's own
  (nvmlGpmMigSampleGet); no GPM on the other models.
- MIG devices answer their GPU instance id (1g: 9, 2g: 3, 3g: 2, as NVIDIA numbers these
  placements) and compute instance id (0).
- Tests make it fail through `lose_gpu`, `fail_init`, `fail_metric`, `remove_function`,
  `report_not_available` and `restore`, and queue XID events through `inject_xid`.
"""

from __future__ import annotations

import functools
import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from services.sampler.simulated_gpm import (
    GpmConstants,
    GpmModel,
    GpmSample,
    c_nvmlGpmMetricsGet_t,
)
from services.sampler.simulated_health import (
    NVML_ERROR_INVALID_ARGUMENT,
    NVML_ERROR_TIMEOUT,
    EventSet,
    HealthConstants,
    HealthModel,
)
from services.sampler.simulated_procfs import FakeProcess, FakeProcTree

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_PSTATE_UNKNOWN = 32
nvmlMemory_v2 = 0x02000028
NVML_DEVICE_MIG_DISABLE = 0
NVML_DEVICE_MIG_ENABLE = 1
NO_INSTANCE = 0xFFFFFFFF  # gpuInstanceId / computeInstanceId of a process outside MIG

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_NO_PERMISSION = 4
NVML_ERROR_NOT_FOUND = 6
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_FUNCTION_NOT_FOUND = 13
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_RESET_REQUIRED = 16
NVML_ERROR_LIB_RM_VERSION_MISMATCH = 18
NVML_ERROR_UNKNOWN = 999

MIB = 1 << 20
DRIVER_VERSION = "550.127.05-simulated"
CUDA_DRIVER_VERSION = 12040  # CUDA 12.4, the newest the 550 driver branch supports
# NVML_VALUE_NOT_AVAILABLE is -1 in nvml.h: all ones in an unsigned int or unsigned long long
# the struct fields that carry a measurement (not a version, PID or instance id)
MEASURED_FIELDS = frozenset(
    {"gpu", "memory", "total", "used", "free", "reserved", "usedGpuMemory", "violationTime"}
)
# what NVML still answers for a GPU lost before the sampler starts (PCW_SIM_LOST_GPUS)
LOST_AT_START_ANSWERS = frozenset({"nvmlDeviceGetHandleByIndex", "nvmlDeviceGetPciInfo"})


class NVMLError(Exception):
    """Mirror of pynvml.NVMLError: carries the NVML return code as `value`."""

    value = NVML_ERROR_UNKNOWN

    def __init__(self, value: int | None = None) -> None:
        if value is not None:
            self.value = value
        super().__init__(self.value)

    def __str__(self) -> str:
        return _ERROR_TEXT.get(self.value, "Unknown Error")


class NVMLError_Uninitialized(NVMLError):
    """NVML was not initialised."""

    value = NVML_ERROR_UNINITIALIZED


class NVMLError_NotSupported(NVMLError):
    """The device does not support this query."""

    value = NVML_ERROR_NOT_SUPPORTED


class NVMLError_NoPermission(NVMLError):
    """The caller lacks the privileges for this query."""

    value = NVML_ERROR_NO_PERMISSION


class NVMLError_NotFound(NVMLError):
    """No such object (an empty MIG device slot)."""

    value = NVML_ERROR_NOT_FOUND


class NVMLError_FunctionNotFound(NVMLError):
    """The NVML library of this driver lacks the function (an older driver)."""

    value = NVML_ERROR_FUNCTION_NOT_FOUND


class NVMLError_DriverNotLoaded(NVMLError):
    """The NVIDIA driver is not loaded."""

    value = NVML_ERROR_DRIVER_NOT_LOADED


class NVMLError_LibraryNotFound(NVMLError):
    """libnvidia-ml.so was not found."""

    value = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):
    """The GPU has fallen off the bus."""

    value = NVML_ERROR_GPU_IS_LOST


class NVMLError_Timeout(NVMLError):
    """Nothing happened before the timeout (an event set's wait)."""

    value = NVML_ERROR_TIMEOUT


class NVMLError_Unknown(NVMLError):
    """An unknown NVML error."""

    value = NVML_ERROR_UNKNOWN


_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_INVALID_ARGUMENT: "Invalid Argument",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_NO_PERMISSION: "Insufficient Permissions",
    NVML_ERROR_NOT_FOUND: "Not Found",
    NVML_ERROR_FUNCTION_NOT_FOUND: "Function Not Found",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
    NVML_ERROR_TIMEOUT: "Timeout",
    NVML_ERROR_GPU_IS_LOST: "GPU is lost",
    NVML_ERROR_UNKNOWN: "Unknown Error",
}


@dataclass(frozen=True)
class GpuModel:
    """A real GPU model's name and limits."""

    name: str
    mem_total_bytes: int
    power_limit_mw: int
    idle_power_mw: int
    max_sm_clock_mhz: int
    mem_clock_mhz: int
    has_fan: bool
    mig_capable: bool = False
    # (profile name, memory in MiB) of the 1g, 2g and 3g MIG profiles, as nvidia-smi lists them
    mig_profiles: tuple[tuple[str, int], ...] = ()
    reserved_mib: int = 512  # memory the driver and firmware reserve (the v2 struct's `reserved`)


MODELS = (
    GpuModel("NVIDIA GeForce RTX 4090", 24564 * MIB, 450_000, 22_000, 2520, 10501, True),
    GpuModel(
        "NVIDIA H100 80GB HBM3", 81559 * MIB, 700_000, 70_000, 1980, 2619, False, True,
        (("1g.10gb", 9984), ("2g.20gb", 20096), ("3g.40gb", 40448)), 1024,
    ),
    GpuModel(
        "NVIDIA A100-SXM4-40GB", 40960 * MIB, 400_000, 55_000, 1410, 1215, False, True,
        (("1g.5gb", 4864), ("2g.10gb", 9984), ("3g.20gb", 20096)),
    ),
    GpuModel("NVIDIA L40S", 46068 * MIB, 350_000, 35_000, 2520, 9001, False),
)  # fmt: skip
# simulated only where `names` names them (MODELS' order decides which index is which model)
EXTRA_MODELS = (GpuModel("Tesla V100-SXM2-32GB", 32768 * MIB, 300_000, 40_000, 1530, 877, False),)
MIG_MODELS = tuple(model for model in MODELS if model.mig_capable)

MIG_SLOTS = 7  # nvmlDeviceGetMaxMigDeviceCount of an A100 or H100
# (slot, compute slices, memory eighths, GPU instance id): 1g, 2g and 3g profiles; slots 2, 4, 5
# and 6 are empty. The eighths size the profiles of a model without its own sizes (a GPU named by
# hand). The ids are those NVIDIA gives these profiles at these placements (1g: 7-14, 2g: 3-6,
# 3g: 1-2); each GPU instance holds one compute instance, id 0.
MIG_PROFILES = ((0, 1, 1, 9), (1, 2, 2, 3), (3, 3, 4, 2))
MIG_COMPUTE_INSTANCE_ID = 0
PID_BASE = 10_000
PID_REUSE_CYCLES = 200  # a GPU's PIDs come back after this many load cycles
TRAIN_MODELS = ("resnet50", "llama-7b", "vit-b16", "bert-large")
TRAIN_UIDS = (1001, 1002, 1003)  # alice, bob, carol in the fake passwd
UNKNOWN_UID = 1004  # not in the fake passwd
IDLE_UID = 1003  # carol's forgotten notebook holds the idle GPUs
IDLE_MEMORY_FILL = 0.25  # the share of memory the notebook holds
IDLE_PID_BASE = 9_000  # below PID_BASE: never one of the jobs' PIDs
IDLE_STARTED_S = 1_600_000_000.0  # the notebook was started long ago (epoch s)


@dataclass(frozen=True)
class SimProcess:
    """One simulated process on a GPU, as NVML lists it and as its fake /proc entry says."""

    proc: FakeProcess
    kind: str  # "compute" or "graphics"
    used_mem_bytes: int | None
    gpu_instance_id: int = NO_INSTANCE
    visible: bool = True

    @property
    def pid(self) -> int:
        """Return the process id."""
        return self.proc.pid


@dataclass
class _Device:
    index: int
    model: GpuModel
    name: str
    uuid: str
    pci_bus_id: str
    period_s: float
    phase_s: float
    lost: bool = False
    still_answers: frozenset[str] = frozenset()  # calls a lost GPU still answers
    unsupported: set[str] = field(default_factory=set)
    not_available: dict[str, bool] = field(default_factory=dict)  # call -> sentinel signed (-1)
    energy_mj: float = 0.0
    energy_read_s: float | None = None
    mig_devices: list[_MigDevice] = field(default_factory=list)
    idle: bool = False  # held by a forgotten notebook, never computing


@dataclass
class _MigDevice:
    parent: _Device
    slot: int
    gpu_instance_id: int
    name: str
    uuid: str
    mem_total_bytes: int


def _mib(value: float) -> int:
    """Return bytes rounded down to whole MiB, as NVML's memory figures are."""
    return int(value) // MIB * MIB


def _may_be_not_available(bits: int) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Make a getter answer NVML_VALUE_NOT_AVAILABLE where `report_not_available` asked for it.

    bits is the width of the getter's values (32: unsigned int, 64: unsigned long long); a
    struct answers it in every measured field, a process list in every entry's usedGpuMemory.
    """

    def decorate(method: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(method)
        def getter(self: SimulatedNvml, handle: Any, *args: Any, **kwargs: Any) -> Any:
            answer = method(self, handle, *args, **kwargs)
            device = handle.parent if isinstance(handle, _MigDevice) else handle
            signed = device.not_available.get(method.__name__)
            if signed is None:
                return answer
            return _not_available(answer, -1 if signed else (1 << bits) - 1)

        return getter

    return decorate


def _not_available(answer: Any, sentinel: int) -> Any:
    """Return answer with every measured value replaced by sentinel."""
    if isinstance(answer, list):
        return [_not_available(entry, sentinel) for entry in answer]
    if isinstance(answer, SimpleNamespace):
        fields = {
            name: sentinel if name in MEASURED_FIELDS else value
            for name, value in vars(answer).items()
        }
        return SimpleNamespace(**fields)
    return sentinel


def _noise(key: str, t_s: float) -> float:
    """Return a repeatable pseudo-random number in [0, 1) for a key and whole second."""
    return _NOISE(key, int(t_s))


def _noise_of_second(key: str, second: int) -> float:
    digest = hashlib.blake2b(f"{key}/{second}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


class _RecentNoise:
    """_noise_of_second, each value of the newest whole second asked and the one before it
    computed once: within a second the same keys are asked again and again (every metric of
    every GPU, every tick of a fast interval); an older second is computed again.

    It holds the keys of two seconds (about 200 a second for 8 GPUs), where a cache of the
    most recent pairs sized for 64 GPUs kept 16,384 of them, 4 MB, at any GPU count.
    """

    def __init__(self) -> None:
        self._second = -1
        self._newest: dict[str, float] = {}
        self._previous: dict[str, float] = {}

    def __call__(self, key: str, second: int) -> float:
        if second > self._second:
            self._previous = self._newest if second == self._second + 1 else {}
            self._newest, self._second = {}, second
        if second == self._second:
            memo = self._newest
        elif second == self._second - 1:
            memo = self._previous
        else:
            return _noise_of_second(key, second)
        value = memo.get(key)
        if value is None:
            value = memo[key] = _noise_of_second(key, second)
        return value


_NOISE = _RecentNoise()


class SimulatedNvml(HealthConstants, GpmConstants):
    """An object that quacks like the `pynvml` module, over `gpu_count` simulated GPUs."""

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_NoPermission = NVMLError_NoPermission
    NVMLError_NotFound = NVMLError_NotFound
    NVMLError_FunctionNotFound = NVMLError_FunctionNotFound
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Timeout = NVMLError_Timeout
    NVMLError_Unknown = NVMLError_Unknown
    c_nvmlGpmMetricsGet_t = c_nvmlGpmMetricsGet_t
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_PSTATE_UNKNOWN = NVML_PSTATE_UNKNOWN
    nvmlMemory_v2 = nvmlMemory_v2
    NVML_DEVICE_MIG_DISABLE = NVML_DEVICE_MIG_DISABLE
    NVML_DEVICE_MIG_ENABLE = NVML_DEVICE_MIG_ENABLE
    NVML_ERROR_UNINITIALIZED = NVML_ERROR_UNINITIALIZED
    NVML_ERROR_NOT_SUPPORTED = NVML_ERROR_NOT_SUPPORTED
    NVML_ERROR_NO_PERMISSION = NVML_ERROR_NO_PERMISSION
    NVML_ERROR_NOT_FOUND = NVML_ERROR_NOT_FOUND
    NVML_ERROR_DRIVER_NOT_LOADED = NVML_ERROR_DRIVER_NOT_LOADED
    NVML_ERROR_LIBRARY_NOT_FOUND = NVML_ERROR_LIBRARY_NOT_FOUND
    NVML_ERROR_FUNCTION_NOT_FOUND = NVML_ERROR_FUNCTION_NOT_FOUND
    NVML_ERROR_GPU_IS_LOST = NVML_ERROR_GPU_IS_LOST
    NVML_ERROR_RESET_REQUIRED = NVML_ERROR_RESET_REQUIRED
    NVML_ERROR_LIB_RM_VERSION_MISMATCH = NVML_ERROR_LIB_RM_VERSION_MISMATCH
    NVML_ERROR_UNKNOWN = NVML_ERROR_UNKNOWN

    def __init__(
        self,
        gpu_count: int,
        host: str = "sim",
        names: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
        mig_gpus: tuple[int, ...] = (),
        process_names: tuple[str, ...] = (),
        proc_tree: FakeProcTree | None = None,
        idle_gpus: tuple[int, ...] = (),
        lost_gpus: tuple[int, ...] = (),
        hot_gpus: tuple[int, ...] = (),
        remap_gpus: tuple[int, ...] = (),
        degraded_link_gpus: tuple[int, ...] = (),
        xid_gpus: tuple[int, ...] = (),
    ) -> None:
        """Simulate gpu_count GPUs; with proc_tree, keep a fake /proc for their processes.

        names name the GPUs by index (a model's exact name simulates that model, EXTRA_MODELS
        included); process_names name the training job of each GPU by index (default "python
        train.py"); idle_gpus are held idle by one notebook process (MIG mode takes precedence);
        lost_gpus have fallen off the bus already (only their handle and PCI info answer).
        Health scenarios (simulated_health), by GPU index: hot_gpus run hot enough for thermal
        slowdown under load; remap_gpus have two uncorrectable ECC errors and rows (pages on a
        V100) pending remapping; degraded_link_gpus train their PCIe link at x8 of x16;
        xid_gpus hit an application XID (13 or 31) every few busy minutes.
        """
        self._clock = clock
        self._lock = threading.Lock()
        self._initialised = False
        self._init_error: type[NVMLError] | None = None
        self._host = host
        self._process_names = process_names
        self._missing: set[str] = set()
        self._processes_at: dict[int, tuple[float, list[SimProcess]]] = {}
        self.proc_tree = proc_tree
        self._health = HealthModel(self, _noise, hot_gpus, remap_gpus, degraded_link_gpus, xid_gpus)
        self._gpm = GpmModel(self)
        self.devices = [
            self._make_device(i, host, names, mig=i in mig_gpus) for i in range(gpu_count)
        ]
        for index in mig_gpus:
            if index < gpu_count:
                self._enable_mig(self.devices[index])
        for index in idle_gpus:
            if index < gpu_count and not self.devices[index].mig_devices:
                self.devices[index].idle = True
        for index in lost_gpus:
            if index < gpu_count:
                self.lose_gpu(index, still_answers=LOST_AT_START_ANSWERS)

    @staticmethod
    def _make_device(index: int, host: str, names: tuple[str, ...], mig: bool) -> _Device:
        """Make GPU index; in MIG mode, a MIG-capable model unless names names it."""
        model = MODELS[index % len(MODELS)]
        named = index < len(names)
        if named:
            model = next((m for m in (*MODELS, *EXTRA_MODELS) if m.name == names[index]), model)
        elif mig and not model.mig_capable:
            model = MIG_MODELS[index % len(MIG_MODELS)]
        seed = _noise(f"{host}/{index}/seed", 0)
        return _Device(
            index=index,
            model=model,
            name=names[index] if index < len(names) else model.name,
            uuid="GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{host}.gpu{index}.pycudawatch")),
            pci_bus_id=f"00000000:{0x17 + index * 0x10:02X}:00.0",
            period_s=1200 + 1800 * seed,
            phase_s=seed * 3600,
        )

    @staticmethod
    def _enable_mig(device: _Device) -> None:
        total_bytes = device.model.mem_total_bytes
        for position, (slot, slices, eighths, instance_id) in enumerate(MIG_PROFILES):
            if position < len(device.model.mig_profiles):
                profile, mem_mib = device.model.mig_profiles[position]
                mem_total_bytes = mem_mib * MIB
            else:
                mem_total_bytes = total_bytes * eighths // 8 // MIB * MIB
                profile = f"{slices}g.{round(total_bytes / MIB / 1024 * eighths / 8)}gb"
            device.mig_devices.append(
                _MigDevice(
                    parent=device,
                    slot=slot,
                    gpu_instance_id=instance_id,
                    name=f"{device.name} MIG {profile}",
                    uuid="MIG-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{device.uuid}.mig{slot}")),
                    mem_total_bytes=mem_total_bytes,
                )
            )

    # -- fault injection for tests -------------------------------------------------------

    def lose_gpu(self, index: int, still_answers: frozenset[str] = frozenset()) -> None:
        """Make every call on GPU `index` raise NVMLError_GpuIsLost, as after an Xid 79.

        The calls named in still_answers (e.g. "nvmlDeviceGetPciInfo") answer as before.
        """
        self.devices[index].lost = True
        self.devices[index].still_answers = still_answers

    def report_not_available(self, index: int, function_name: str, signed: bool = False) -> None:
        """Make `function_name` on GPU `index` answer NVML_VALUE_NOT_AVAILABLE.

        As all ones of the value's width (0xFFFFFFFF, 0xFFFFFFFFFFFFFFFF), or -1 when signed.
        """
        self.devices[index].not_available[function_name] = signed

    def fail_metric(self, index: int, function_name: str) -> None:
        """Make `function_name` (e.g. "nvmlDeviceGetPowerUsage") not supported on GPU `index`."""
        self.devices[index].unsupported.add(function_name)

    def remove_function(self, function_name: str) -> None:
        """Make `function_name` raise FunctionNotFound on every GPU, as with an older driver."""
        self._missing.add(function_name)

    def fail_init(self, error: type[NVMLError] | None) -> None:
        """Make nvmlInit raise `error` (None: succeed) and drop the current session."""
        self._init_error = error
        if error is not None:
            self._initialised = False

    def inject_xid(self, index: int, code: int) -> None:
        """Report XID `code` on GPU `index` now (79: fell off the bus, 48: DBE, 63/64: rows)."""
        self._health.inject_xid(index, code)

    def restore(self) -> None:
        """Undo every injected fault."""
        self._init_error = None
        self._missing.clear()
        for device in self.devices:
            device.lost = False
            device.still_answers = frozenset()
            device.unsupported.clear()
            device.not_available.clear()

    # -- the pynvml subset -----------------------------------------------------------------

    def nvmlInit(self) -> None:
        """Start an NVML session."""
        if self._init_error is not None:
            raise self._init_error()
        self._initialised = True

    def nvmlShutdown(self) -> None:
        """End the NVML session."""
        self._check_session()
        self._initialised = False

    def nvmlSystemGetDriverVersion(self) -> str:
        """Return the (simulated) driver version."""
        self._check_session()
        return DRIVER_VERSION

    def nvmlSystemGetCudaDriverVersion(self) -> int:
        """Return the newest CUDA version the driver supports (12040: CUDA 12.4)."""
        self._health.check_call("nvmlSystemGetCudaDriverVersion")
        return CUDA_DRIVER_VERSION

    def nvmlDeviceGetCount(self) -> int:
        """Return the number of GPUs."""
        self._check_session()
        return len(self.devices)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> _Device:
        """Return the handle of GPU `index`."""
        self._check_session()
        if not 0 <= index < len(self.devices):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT
        return self._check(self.devices[index], "nvmlDeviceGetHandleByIndex")

    def nvmlDeviceGetName(self, handle: _Device | _MigDevice) -> str:
        """Return the product name (of a MIG device: the parent's, then "MIG" and its profile)."""
        return self._check_any(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: _Device | _MigDevice) -> str:
        """Return the GPU UUID ("GPU-..."), or a MIG device's ("MIG-...")."""
        return self._check_any(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle: _Device) -> SimpleNamespace:
        """Return PCI info; `busId` is bytes, as in pynvml's struct."""
        device = self._check(handle, "nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=device.pci_bus_id.encode())

    @_may_be_not_available(32)
    def nvmlDeviceGetUtilizationRates(self, handle: _Device | _MigDevice) -> SimpleNamespace:
        """Return `.gpu` and `.memory` utilisation in percent; not supported with MIG."""
        device = self._check_any(handle, "nvmlDeviceGetUtilizationRates")
        if isinstance(device, _MigDevice) or device.mig_devices:
            raise NVMLError_NotSupported()
        load = self._load(device)
        gpu = round(100 * load)
        return SimpleNamespace(gpu=gpu, memory=round(gpu * 0.45))

    @_may_be_not_available(64)
    def nvmlDeviceGetMemoryInfo(
        self, handle: _Device | _MigDevice, version: int | None = None
    ) -> SimpleNamespace:
        """Return `.total`, `.used`, `.free` in bytes (and `.reserved` for the v2 struct).

        v2: used is what processes allocated, and total = reserved + used + free. v1: used
        includes the reserved memory (total = used + free). A MIG device answers for its own
        share, with nothing reserved; a MIG-enabled GPU for all of its devices.
        """
        device = self._check_any(handle, "nvmlDeviceGetMemoryInfo")
        if isinstance(device, _MigDevice):
            total, reserved = device.mem_total_bytes, 0
            allocated = self._mig_used_bytes(device)
        else:
            total, reserved = device.model.mem_total_bytes, device.model.reserved_mib * MIB
            if device.mig_devices:
                allocated = sum(self._mig_used_bytes(mig) for mig in device.mig_devices)
            else:
                allocated = self._in_use_bytes(device)
        free = total - reserved - allocated
        if version == nvmlMemory_v2:
            return SimpleNamespace(
                version=version, total=total, reserved=reserved, free=free, used=allocated
            )
        return SimpleNamespace(total=total, free=free, used=reserved + allocated)

    @_may_be_not_available(32)
    def nvmlDeviceGetTemperature(self, handle: _Device, sensor: int) -> int:
        """Return the core temperature in °C."""
        device = self._check(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_NotSupported()
        return self._health.temperature_c(device)

    @_may_be_not_available(32)
    def nvmlDeviceGetPowerUsage(self, handle: _Device) -> int:
        """Return the power draw in mW (at most the enforced limit)."""
        device = self._check(handle, "nvmlDeviceGetPowerUsage")
        return self._power_mw(device)

    @_may_be_not_available(32)
    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Device) -> int:
        """Return the enforced power limit in mW."""
        return self._check(handle, "nvmlDeviceGetEnforcedPowerLimit").model.power_limit_mw

    @_may_be_not_available(64)
    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Device) -> int:
        """Return energy used since the driver loaded, in mJ (integrates the power draw)."""
        device = self._check(handle, "nvmlDeviceGetTotalEnergyConsumption")
        now_s = self._clock()
        with self._lock:
            if device.energy_read_s is not None and now_s > device.energy_read_s:
                device.energy_mj += self._power_mw(device) * (now_s - device.energy_read_s)
            device.energy_read_s = now_s
            return int(device.energy_mj) + 3_600_000_000 * (device.index + 1)

    @_may_be_not_available(32)
    def nvmlDeviceGetFanSpeed(self, handle: _Device) -> int:
        """Return the fan speed in percent; passively cooled models raise NotSupported."""
        device = self._check(handle, "nvmlDeviceGetFanSpeed")
        if not device.model.has_fan:
            raise NVMLError_NotSupported()
        return round(30 + 55 * self._load(device, lag_s=60))

    @_may_be_not_available(32)
    def nvmlDeviceGetClockInfo(self, handle: _Device, clock_type: int) -> int:
        """Return the SM or memory clock in MHz."""
        device = self._check(handle, "nvmlDeviceGetClockInfo")
        if clock_type == NVML_CLOCK_MEM:
            return device.model.mem_clock_mhz if self._load(device) > 0.02 else 405
        if clock_type in (NVML_CLOCK_SM, self.NVML_CLOCK_GRAPHICS):
            return self._health.sm_clock_mhz(device)
        raise NVMLError_NotSupported()

    @_may_be_not_available(32)
    def nvmlDeviceGetPerformanceState(self, handle: _Device) -> int:
        """Return the P-state: 0 when busy, 8 when idle."""
        return 0 if self._load(self._check(handle, "nvmlDeviceGetPerformanceState")) > 0.02 else 8

    def nvmlDeviceGetMigMode(self, handle: _Device) -> list[int]:
        """Return [current, pending] MIG mode; not supported on GPUs without MIG."""
        device = self._check(handle, "nvmlDeviceGetMigMode")
        if not (device.mig_devices or device.model.mig_capable):
            raise NVMLError_NotSupported()
        mode = NVML_DEVICE_MIG_ENABLE if device.mig_devices else NVML_DEVICE_MIG_DISABLE
        return [mode, mode]

    def nvmlDeviceGetGpuInstanceId(self, handle: _MigDevice) -> int:
        """Return a MIG device's GPU instance id; a whole GPU raises InvalidArgument."""
        return self._mig_only(handle, "nvmlDeviceGetGpuInstanceId").gpu_instance_id

    def nvmlDeviceGetComputeInstanceId(self, handle: _MigDevice) -> int:
        """Return a MIG device's compute instance id (0: one per GPU instance here)."""
        self._mig_only(handle, "nvmlDeviceGetComputeInstanceId")
        return MIG_COMPUTE_INSTANCE_ID

    def _mig_only(self, handle: _Device | _MigDevice, function_name: str) -> _MigDevice:
        device = self._check_any(handle, function_name)
        if not isinstance(device, _MigDevice):
            raise NVMLError(2)  # NVML_ERROR_INVALID_ARGUMENT: not a MIG device handle
        return device

    def nvmlDeviceGetMaxMigDeviceCount(self, handle: _Device) -> int:
        """Return how many MIG device slots the GPU has."""
        device = self._check(handle, "nvmlDeviceGetMaxMigDeviceCount")
        if not (device.mig_devices or device.model.mig_capable):
            raise NVMLError_NotSupported()
        return MIG_SLOTS

    def nvmlDeviceGetMigDeviceHandleByIndex(self, handle: _Device, index: int) -> _MigDevice:
        """Return the MIG device in slot `index`; an empty slot raises NotFound."""
        device = self._check(handle, "nvmlDeviceGetMigDeviceHandleByIndex")
        for mig in device.mig_devices:
            if mig.slot == index:
                return mig
        raise NVMLError_NotFound()

    @_may_be_not_available(64)
    def nvmlDeviceGetComputeRunningProcesses_v3(self, handle: object) -> list[SimpleNamespace]:
        """Return the compute processes: `.pid`, `.usedGpuMemory` (bytes or None), instances."""
        return self._process_list(handle, "compute", "nvmlDeviceGetComputeRunningProcesses_v3")

    @_may_be_not_available(64)
    def nvmlDeviceGetComputeRunningProcesses_v2(self, handle: object) -> list[SimpleNamespace]:
        """Return the compute processes (the v2 struct has the same fields as v3)."""
        return self._process_list(handle, "compute", "nvmlDeviceGetComputeRunningProcesses_v2")

    @_may_be_not_available(64)
    def nvmlDeviceGetComputeRunningProcesses(self, handle: object) -> list[SimpleNamespace]:
        """Return the compute processes (pynvml's unversioned name)."""
        return self._process_list(handle, "compute", "nvmlDeviceGetComputeRunningProcesses")

    @_may_be_not_available(64)
    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle: object) -> list[SimpleNamespace]:
        """Return the graphics processes, shaped as the compute ones."""
        return self._process_list(handle, "graphics", "nvmlDeviceGetGraphicsRunningProcesses_v3")

    @_may_be_not_available(64)
    def nvmlDeviceGetGraphicsRunningProcesses_v2(self, handle: object) -> list[SimpleNamespace]:
        """Return the graphics processes (v2 struct)."""
        return self._process_list(handle, "graphics", "nvmlDeviceGetGraphicsRunningProcesses_v2")

    @_may_be_not_available(64)
    def nvmlDeviceGetGraphicsRunningProcesses(self, handle: object) -> list[SimpleNamespace]:
        """Return the graphics processes (pynvml's unversioned name)."""
        return self._process_list(handle, "graphics", "nvmlDeviceGetGraphicsRunningProcesses")

    # -- health: each call is checked here, answered by simulated_health -----------------------

    @_may_be_not_available(64)
    def nvmlDeviceGetCurrentClocksEventReasons(self, handle: _Device) -> int:
        """Return why the clocks are held down now: a bitmask of nvmlClocksEventReason*."""
        return self._health.reasons(self._check(handle, "nvmlDeviceGetCurrentClocksEventReasons"))

    @_may_be_not_available(64)
    def nvmlDeviceGetCurrentClocksThrottleReasons(self, handle: _Device) -> int:
        """Return the clock-event reasons (the older drivers' name)."""
        device = self._check(handle, "nvmlDeviceGetCurrentClocksThrottleReasons")
        return self._health.reasons(device)

    @_may_be_not_available(64)
    def nvmlDeviceGetViolationStatus(self, handle: _Device, perfPolicyType: int) -> SimpleNamespace:
        """Return `.referenceTime` (µs) and `.violationTime` (ns held down by POWER or THERMAL)."""
        device = self._check(handle, "nvmlDeviceGetViolationStatus")
        return self._health.violation(device, perfPolicyType)

    def nvmlDeviceGetEccMode(self, handle: _Device) -> list[int]:
        """Return [current, pending] ECC mode; NotSupported without ECC."""
        return self._health.ecc_mode(self._check(handle, "nvmlDeviceGetEccMode"))

    @_may_be_not_available(64)
    def nvmlDeviceGetTotalEccErrors(self, handle: _Device, errorType: int, counterType: int) -> int:
        """Return the corrected or uncorrected ECC errors, volatile or aggregate."""
        device = self._check(handle, "nvmlDeviceGetTotalEccErrors")
        return self._health.ecc_errors(device, errorType, counterType)

    def nvmlDeviceGetRemappedRows(self, handle: _Device) -> tuple[int, int, int, int]:
        """Return (correctable, uncorrectable, pending, failure) rows; Ampere and newer."""
        return self._health.remapped_rows(self._check(handle, "nvmlDeviceGetRemappedRows"))

    def nvmlDeviceGetRetiredPages(self, handle: _Device, sourceFilter: int) -> list[int]:
        """Return the addresses of the pages retired for a cause; before Ampere only."""
        device = self._check(handle, "nvmlDeviceGetRetiredPages")
        return self._health.retired_pages(device, sourceFilter)

    def nvmlDeviceGetRetiredPagesPendingStatus(self, handle: _Device) -> int:
        """Return 1 while retired pages wait for a reset, else 0."""
        device = self._check(handle, "nvmlDeviceGetRetiredPagesPendingStatus")
        return self._health.retired_pages_pending(device)

    @_may_be_not_available(32)
    def nvmlDeviceGetCurrPcieLinkGeneration(self, handle: _Device) -> int:
        """Return the PCIe generation now (1 while idle)."""
        device = self._check(handle, "nvmlDeviceGetCurrPcieLinkGeneration")
        return self._health.pcie_gen(device, current=True)

    @_may_be_not_available(32)
    def nvmlDeviceGetMaxPcieLinkGeneration(self, handle: _Device) -> int:
        """Return the highest PCIe generation of the GPU and its slot."""
        device = self._check(handle, "nvmlDeviceGetMaxPcieLinkGeneration")
        return self._health.pcie_gen(device, current=False)

    @_may_be_not_available(32)
    def nvmlDeviceGetCurrPcieLinkWidth(self, handle: _Device) -> int:
        """Return the PCIe lanes the link trained to."""
        device = self._check(handle, "nvmlDeviceGetCurrPcieLinkWidth")
        return self._health.pcie_width(device, current=True)

    @_may_be_not_available(32)
    def nvmlDeviceGetMaxPcieLinkWidth(self, handle: _Device) -> int:
        """Return the PCIe lanes the GPU has."""
        device = self._check(handle, "nvmlDeviceGetMaxPcieLinkWidth")
        return self._health.pcie_width(device, current=False)

    @_may_be_not_available(32)
    def nvmlDeviceGetPcieThroughput(self, handle: _Device, counter: int) -> int:
        """Return the KB/s sent (NVML_PCIE_UTIL_TX_BYTES) or received over the last 20 ms."""
        device = self._check(handle, "nvmlDeviceGetPcieThroughput")
        return self._health.pcie_throughput(device, counter)

    @_may_be_not_available(32)
    def nvmlDeviceGetPcieReplayCounter(self, handle: _Device) -> int:
        """Return the PCIe replays since the driver loaded."""
        device = self._check(handle, "nvmlDeviceGetPcieReplayCounter")
        return self._health.pcie_replays(device)

    def nvmlDeviceGetNvLinkState(self, handle: _Device, link: int) -> int:
        """Return NVML_FEATURE_ENABLED for a link the GPU has; NotSupported for others."""
        return self._health.nvlink_state(self._check(handle, "nvmlDeviceGetNvLinkState"), link)

    def nvmlDeviceGetFieldValues(self, handle: _Device, fieldIds: list[Any]) -> list[Any]:
        """Return one answer per field id (`.nvmlReturn`, `.valueType`, `.value`...)."""
        device = self._check(handle, "nvmlDeviceGetFieldValues")
        return self._health.field_values(device, fieldIds)

    def nvmlDeviceGetEncoderUtilization(self, handle: _Device) -> list[int]:
        """Return [encoder utilization %, sampling period µs]."""
        device = self._check(handle, "nvmlDeviceGetEncoderUtilization")
        return self._health.video_util(device, encoder=True)

    def nvmlDeviceGetDecoderUtilization(self, handle: _Device) -> list[int]:
        """Return [decoder utilization %, sampling period µs]."""
        device = self._check(handle, "nvmlDeviceGetDecoderUtilization")
        return self._health.video_util(device, encoder=False)

    @_may_be_not_available(32)
    def nvmlDeviceGetMaxClockInfo(self, handle: _Device, type: int) -> int:
        """Return the model's maximum SM (graphics) or memory clock in MHz."""
        device = self._check(handle, "nvmlDeviceGetMaxClockInfo")
        return self._health.max_clock_mhz(device, type)

    def nvmlDeviceGetPowerManagementLimitConstraints(self, handle: _Device) -> list[int]:
        """Return [min, max] power limit in mW."""
        device = self._check(handle, "nvmlDeviceGetPowerManagementLimitConstraints")
        return self._health.power_limit_range(device)

    @_may_be_not_available(32)
    def nvmlDeviceGetTemperatureThreshold(self, handle: _Device, threshold: int) -> int:
        """Return a temperature threshold (NVML_TEMPERATURE_THRESHOLD_*) in °C."""
        device = self._check(handle, "nvmlDeviceGetTemperatureThreshold")
        return self._health.temperature_threshold(device, threshold)

    def nvmlDeviceGetSupportedEventTypes(self, handle: _Device) -> int:
        """Return the event types the GPU reports (nvmlEventType* bits)."""
        device = self._check(handle, "nvmlDeviceGetSupportedEventTypes")
        return self._health.supported_events(device)

    def nvmlEventSetCreate(self) -> EventSet:
        """Return a new event set."""
        self._health.check_call("nvmlEventSetCreate")
        return self._health.create_set()

    def nvmlDeviceRegisterEvents(self, handle: _Device, eventTypes: int, eventSet: Any) -> None:
        """Deliver the GPU's events of eventTypes that happen from now on to eventSet."""
        device = self._check(handle, "nvmlDeviceRegisterEvents")
        self._health.register(device, eventTypes, eventSet)

    def nvmlEventSetWait_v2(self, eventSet: Any, timeoutms: int) -> SimpleNamespace:
        """Return the next event (`.device`, `.eventType`, `.eventData`: the XID, instances).

        Waits at most timeoutms (0: not at all), then raises NVMLError_Timeout.
        """
        self._health.check_call("nvmlEventSetWait_v2")
        return self._health.wait(eventSet, timeoutms)

    def nvmlEventSetWait(self, eventSet: Any, timeoutms: int) -> SimpleNamespace:
        """Return the next event, as nvmlEventSetWait_v2 (pynvml calls it)."""
        return self.nvmlEventSetWait_v2(eventSet, timeoutms)

    def nvmlEventSetFree(self, eventSet: Any) -> None:
        """Free an event set."""
        self._health.check_call("nvmlEventSetFree")
        self._health.free_set(eventSet)

    # -- GPM: each call is checked here, answered by simulated_gpm -----------------------------

    def nvmlGpmQueryDeviceSupport(self, device: _Device) -> SimpleNamespace:
        """Return `.isSupportedDevice`: 1 where the GPU has GPM (Hopper), else 0."""
        return self._gpm.query_support(self._check(device, "nvmlGpmQueryDeviceSupport"))

    def nvmlGpmSampleAlloc(self) -> GpmSample:
        """Return a new GPM sample, to be filled by nvmlGpmSampleGet."""
        self._health.check_call("nvmlGpmSampleAlloc")
        return self._gpm.alloc()

    def nvmlGpmSampleFree(self, gpmSample: Any) -> None:
        """Free a GPM sample."""
        self._health.check_call("nvmlGpmSampleFree")
        self._gpm.free(gpmSample)

    def nvmlGpmSampleGet(self, device: _Device, gpmSample: Any) -> GpmSample:
        """Fill gpmSample with the GPU's GPM counters now; NotSupported without GPM."""
        return self._gpm.take(self._check(device, "nvmlGpmSampleGet"), gpmSample)

    def nvmlGpmMigSampleGet(self, device: _Device, gpuInstanceId: int, gpmSample: Any) -> Any:
        """Fill gpmSample with one MIG instance's GPM counters now (of the GPU's handle and the
        instance's GPU instance id); NotSupported without GPM, NotFound for no such instance."""
        gpu = self._check(device, "nvmlGpmMigSampleGet")
        for mig in gpu.mig_devices:
            if mig.gpu_instance_id == gpuInstanceId:
                return self._gpm.take(gpu, gpmSample, mig)
        if not self._gpm.supported(gpu):
            raise NVMLError_NotSupported()
        raise NVMLError_NotFound()

    def nvmlGpmMetricsGet(self, metricsGet: Any) -> Any:
        """Answer each metric of metricsGet between its two samples (`.metrics[i]`'s
        `.nvmlReturn` and `.value`: percent, or MiB/s for PCIe)."""
        self._health.check_call("nvmlGpmMetricsGet")
        return self._gpm.metrics(metricsGet)

    # -- the simulated processes -----------------------------------------------------------

    def processes(self, handle: _Device | _MigDevice) -> list[SimProcess]:
        """Return the processes running now on a GPU (all its MIG devices) or one MIG device."""
        if isinstance(handle, _MigDevice):
            return [
                p
                for p in self.processes(handle.parent)
                if p.gpu_instance_id == handle.gpu_instance_id
            ]
        now_s = self._clock()
        cached = self._processes_at.get(handle.index)
        if cached is not None and cached[0] == now_s:
            return cached[1]
        if handle.mig_devices:
            found = [p for mig in handle.mig_devices if (p := self._mig_job(mig, now_s))]
        elif handle.idle:
            found = [self._notebook(handle)]
        else:
            found = self._jobs(handle, now_s)
        self._processes_at[handle.index] = (now_s, found)
        if self.proc_tree is not None:
            self.proc_tree.sync(str(handle.index), [p.proc for p in found if p.visible])
        return found

    def _process_list(self, handle: object, kind: str, function_name: str) -> list[SimpleNamespace]:
        device = self._check_any(handle, function_name)
        if isinstance(device, _Device) and device.mig_devices:
            raise NVMLError_NoPermission()  # the whole GPU's list needs privileges under MIG
        return [
            SimpleNamespace(
                pid=p.pid,
                usedGpuMemory=p.used_mem_bytes,
                gpuInstanceId=p.gpu_instance_id,
                computeInstanceId=0 if p.gpu_instance_id != NO_INSTANCE else NO_INSTANCE,
            )
            for p in self.processes(device)
            if p.kind == kind
        ]

    def _pid(self, device: _Device, cycle: int, slot: int) -> int:
        # index * 4 + slot is below 256 and differs between any two running jobs
        return PID_BASE + (cycle % PID_REUSE_CYCLES) * 256 + device.index * 4 + slot

    def _container(self, key: str) -> str:
        return hashlib.blake2b(f"{self._host}/{key}".encode(), digest_size=32).hexdigest()

    def _cgroup(self, device: _Device, slot: int, cycle: int, uid: int) -> str:
        """Return a cgroup v2 file: Docker, Kubernetes on containerd, or a login session."""
        container = self._container(f"{device.index}/{slot}/{cycle}")
        layout = (device.index + slot) % 3
        if layout == 0:
            return f"0::/system.slice/docker-{container}.scope\n"
        if layout == 1:
            pod = str(uuid.uuid5(uuid.NAMESPACE_DNS, container)).replace("-", "_")
            return (
                "0::/kubepods.slice/kubepods-burstable.slice/"
                f"kubepods-burstable-pod{pod}.slice/cri-containerd-{container}.scope\n"
            )
        return f"0::/user.slice/user-{uid}.slice/session-{cycle % 50 + 1}.scope\n"

    def _jobs(self, device: _Device, now_s: float) -> list[SimProcess]:
        """Return the training job (and the evaluation job) of a GPU without MIG."""
        position = self._cycle(device, now_s)
        if position >= 0.7:
            return []
        cycle = int((now_s + device.phase_s) // device.period_s)
        started_s = now_s - position * device.period_s
        in_use = self._in_use_bytes(device)
        evaluating = 0.35 <= position < 0.6
        index = device.index
        uid = TRAIN_UIDS[(index + cycle) % len(TRAIN_UIDS)]
        if index < len(self._process_names):
            name = self._process_names[index]
            argv: tuple[str, ...] = (name, "--gpu", str(index))
        else:
            name, model = "python", TRAIN_MODELS[(index + cycle) % len(TRAIN_MODELS)]
            argv = ("python", "train.py", "--model", model, "--gpu", str(index))
        train = FakeProcess(
            pid=self._pid(device, cycle, 0),
            name=name,
            argv=argv,
            uid=uid,
            cgroup=self._cgroup(device, 0, cycle, uid),
            start_ticks=int(started_s * 100),
        )
        jobs = [SimProcess(train, "compute", _mib(in_use * (0.8 if evaluating else 0.95)))]
        if evaluating:
            graphics = device.model.has_fan
            eval_uid = UNKNOWN_UID if index % 4 == 2 else TRAIN_UIDS[(index + cycle + 1) % 3]
            eval_argv = (
                ("blender", "--background", "scene.blend", "--render-anim")
                if graphics
                else ("python3", "-m", "eval", "--checkpoint", f"ckpt-{cycle % 1000}.pt")
            )
            growth = 0.5 + 0.5 * (position - 0.35) / 0.25
            evaluation = FakeProcess(
                pid=self._pid(device, cycle, 1),
                name=eval_argv[0],
                argv=eval_argv,
                uid=eval_uid,
                cgroup=self._cgroup(device, 1, cycle, eval_uid),
                start_ticks=int((started_s + 0.35 * device.period_s) * 100),
            )
            jobs.append(
                SimProcess(
                    evaluation,
                    "graphics" if graphics else "compute",
                    _mib(in_use * 0.15 * growth),
                    visible=index % 4 != 1,
                )
            )
        return jobs

    def _notebook(self, device: _Device) -> SimProcess:
        """Return the forgotten notebook kernel that holds an idle GPU's memory."""
        kernel = f"/home/carol/.local/share/jupyter/runtime/kernel-{device.index}.json"
        proc = FakeProcess(
            pid=IDLE_PID_BASE + device.index,
            name="python",
            argv=("python", "-m", "ipykernel_launcher", "-f", kernel),
            uid=IDLE_UID,
            cgroup=f"0::/system.slice/docker-{self._container(f'{device.index}/notebook')}.scope\n",
            start_ticks=int(IDLE_STARTED_S * 100),
        )
        return SimProcess(proc, "compute", self._in_use_bytes(device))

    def _mig_job(self, mig: _MigDevice, now_s: float) -> SimProcess | None:
        """Return the job running on a MIG device, if any (each runs on its own cycle)."""
        device = mig.parent
        shifted_s = now_s + self._mig_shift_s(mig)
        position = self._cycle(device, shifted_s)
        if position >= 0.7:
            return None
        cycle = int((shifted_s + device.phase_s) // device.period_s)
        uid = TRAIN_UIDS[(device.index + mig.slot + cycle) % len(TRAIN_UIDS)]
        proc = FakeProcess(
            pid=self._pid(device, cycle, min(mig.slot, 3)),
            name="python",
            argv=("python", "serve.py", "--port", str(8000 + mig.slot)),
            uid=uid,
            cgroup=self._cgroup(device, 1 + mig.slot * 3, cycle, uid),  # always on containerd
            start_ticks=int((now_s - position * device.period_s) * 100),
        )
        used = _mib(self._mig_used_bytes(mig) * 0.95)
        return SimProcess(proc, "compute", used, gpu_instance_id=mig.gpu_instance_id)

    # -- the simulated load -----------------------------------------------------------------

    def _check_session(self) -> None:
        if not self._initialised:
            raise NVMLError_Uninitialized()

    def _check(self, handle: _Device | _MigDevice, function_name: str) -> _Device:
        """Check a call on a whole GPU; a MIG device handle does not support it."""
        device = self._check_any(handle, function_name)
        if isinstance(device, _MigDevice):
            raise NVMLError_NotSupported()
        return device

    def _check_any(self, handle: _Device | _MigDevice, function_name: str) -> _Device | _MigDevice:
        """Check a call that a GPU and a MIG device both answer; faults follow the parent."""
        self._check_session()
        if function_name in self._missing:
            raise NVMLError_FunctionNotFound()
        device = handle.parent if isinstance(handle, _MigDevice) else handle
        if device.lost and function_name not in device.still_answers:
            raise NVMLError_GpuIsLost()
        if function_name in device.unsupported:
            raise NVMLError_NotSupported()
        return handle

    def _cycle(self, device: _Device, t_s: float) -> float:
        """Return where in its ramp/train/idle cycle the GPU is, from 0 to 1."""
        return ((t_s + device.phase_s) % device.period_s) / device.period_s

    def _load(self, device: _Device, lag_s: float = 0.0, at_s: float | None = None) -> float:
        """Return the GPU's load from 0 to 1: ramp 10%, train 60% (with jitter), idle 30%."""
        if device.idle:
            return 0.0
        t_s = (self._clock() if at_s is None else at_s) - lag_s
        position = self._cycle(device, t_s)
        if position < 0.1:
            base = position / 0.1
        elif position < 0.7:
            wave = 0.08 * math.sin(2 * math.pi * t_s / 97)
            base = 0.86 + wave + 0.1 * (_noise(device.uuid, t_s) - 0.5)
        else:
            base = 0.0
        return min(1.0, max(0.0, base))

    def _memory_fill(self, device: _Device, shift_s: float = 0.0) -> float:
        """Return the share of memory in use: it fills in the ramp and is freed when idle."""
        if device.idle:
            return IDLE_MEMORY_FILL
        t_s = self._clock() + shift_s
        position = self._cycle(device, t_s)
        if position < 0.1:
            return 0.02 + 0.8 * position / 0.1
        if position < 0.7:
            return 0.82 + 0.05 * _noise(device.uuid + "m", t_s / 30)
        return 0.0

    def _in_use_bytes(self, device: _Device) -> int:
        """Return the memory the GPU's processes hold, in whole MiB (the v2 struct's used)."""
        usable = device.model.mem_total_bytes - device.model.reserved_mib * MIB
        return int(usable * self._memory_fill(device)) // MIB * MIB

    @staticmethod
    def _mig_shift_s(mig: _MigDevice) -> float:
        return mig.slot * mig.parent.period_s / 3

    def _mig_used_bytes(self, mig: _MigDevice) -> int:
        fill = self._memory_fill(mig.parent, self._mig_shift_s(mig))
        return int(mig.mem_total_bytes * fill) // MIB * MIB

    def _power_mw(self, device: _Device) -> int:
        return self._health.power_mw(device)
