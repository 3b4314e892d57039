"""Simulated GPUs: a stand-in for the `pynvml` module, for machines without an NVIDIA GPU.

It offers the subset of pynvml that the reader calls, with the same names, argument order,
return shapes (objects with the same attributes, values in NVML's units) and error classes, so
the sampler's NVML code runs unchanged over it. Readings follow a training-like load per GPU: it
ramps up, trains with jitter, idles, and repeats on its own period; temperature and power follow
the load, and memory fills while training and is freed when idle. Every GPU reports its fan as
not supported except the GeForce card, as on real data-centre GPUs.

Tests make it fail through `lose_gpu`, `fail_init`, `fail_metric`, and `restore`.
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace

NVML_TEMPERATURE_GPU = 0
NVML_CLOCK_SM = 1
NVML_CLOCK_MEM = 2
NVML_PSTATE_UNKNOWN = 32
nvmlMemory_v2 = 0x02000028

NVML_ERROR_UNINITIALIZED = 1
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_DRIVER_NOT_LOADED = 9
NVML_ERROR_LIBRARY_NOT_FOUND = 12
NVML_ERROR_GPU_IS_LOST = 15
NVML_ERROR_UNKNOWN = 999

MIB = 1 << 20


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


class NVMLError_DriverNotLoaded(NVMLError):
    """The NVIDIA driver is not loaded."""

    value = NVML_ERROR_DRIVER_NOT_LOADED


class NVMLError_LibraryNotFound(NVMLError):
    """libnvidia-ml.so was not found."""

    value = NVML_ERROR_LIBRARY_NOT_FOUND


class NVMLError_GpuIsLost(NVMLError):
    """The GPU has fallen off the bus."""

    value = NVML_ERROR_GPU_IS_LOST


class NVMLError_Unknown(NVMLError):
    """An unknown NVML error."""

    value = NVML_ERROR_UNKNOWN


_ERROR_TEXT = {
    NVML_ERROR_UNINITIALIZED: "Uninitialized",
    NVML_ERROR_NOT_SUPPORTED: "Not Supported",
    NVML_ERROR_DRIVER_NOT_LOADED: "Driver Not Loaded",
    NVML_ERROR_LIBRARY_NOT_FOUND: "NVML Shared Library Not Found",
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


MODELS = (
    GpuModel("NVIDIA GeForce RTX 4090", 24564 * MIB, 450_000, 22_000, 2520, 10501, True),
    GpuModel("NVIDIA H100 80GB HBM3", 81559 * MIB, 700_000, 70_000, 1980, 2619, False),
    GpuModel("NVIDIA A100-SXM4-40GB", 40960 * MIB, 400_000, 55_000, 1410, 1215, False),
    GpuModel("NVIDIA L40S", 46068 * MIB, 350_000, 35_000, 2520, 9001, False),
)


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
    unsupported: set[str] = field(default_factory=set)
    energy_mj: float = 0.0
    energy_read_s: float | None = None


def _noise(key: str, t_s: float) -> float:
    """Return a repeatable pseudo-random number in [0, 1) for a key and whole second."""
    digest = hashlib.blake2b(f"{key}/{int(t_s)}".encode(), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


class SimulatedNvml:
    """An object that quacks like the `pynvml` module, over `gpu_count` simulated GPUs."""

    NVMLError = NVMLError
    NVMLError_Uninitialized = NVMLError_Uninitialized
    NVMLError_NotSupported = NVMLError_NotSupported
    NVMLError_DriverNotLoaded = NVMLError_DriverNotLoaded
    NVMLError_LibraryNotFound = NVMLError_LibraryNotFound
    NVMLError_GpuIsLost = NVMLError_GpuIsLost
    NVMLError_Unknown = NVMLError_Unknown
    NVML_TEMPERATURE_GPU = NVML_TEMPERATURE_GPU
    NVML_CLOCK_SM = NVML_CLOCK_SM
    NVML_CLOCK_MEM = NVML_CLOCK_MEM
    NVML_PSTATE_UNKNOWN = NVML_PSTATE_UNKNOWN
    nvmlMemory_v2 = nvmlMemory_v2

    def __init__(
        self,
        gpu_count: int,
        host: str = "sim",
        names: tuple[str, ...] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._initialised = False
        self._init_error: type[NVMLError] | None = None
        self.devices = [self._make_device(i, host, names) for i in range(gpu_count)]

    @staticmethod
    def _make_device(index: int, host: str, names: tuple[str, ...]) -> _Device:
        model = MODELS[index % len(MODELS)]
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

    # -- fault injection for tests -------------------------------------------------------

    def lose_gpu(self, index: int) -> None:
        """Make every call on GPU `index` raise NVMLError_GpuIsLost, as after an Xid 79."""
        self.devices[index].lost = True

    def fail_metric(self, index: int, function_name: str) -> None:
        """Make `function_name` (e.g. "nvmlDeviceGetPowerUsage") not supported on GPU `index`."""
        self.devices[index].unsupported.add(function_name)

    def fail_init(self, error: type[NVMLError] | None) -> None:
        """Make nvmlInit raise `error` (None: succeed) and drop the current session."""
        self._init_error = error
        if error is not None:
            self._initialised = False

    def restore(self) -> None:
        """Undo every injected fault."""
        self._init_error = None
        for device in self.devices:
            device.lost = False
            device.unsupported.clear()

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
        return "550.127.05-simulated"

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

    def nvmlDeviceGetName(self, handle: _Device) -> str:
        """Return the product name."""
        return self._check(handle, "nvmlDeviceGetName").name

    def nvmlDeviceGetUUID(self, handle: _Device) -> str:
        """Return the GPU UUID."""
        return self._check(handle, "nvmlDeviceGetUUID").uuid

    def nvmlDeviceGetPciInfo(self, handle: _Device) -> SimpleNamespace:
        """Return PCI info; `busId` is bytes, as in pynvml's struct."""
        device = self._check(handle, "nvmlDeviceGetPciInfo")
        return SimpleNamespace(busId=device.pci_bus_id.encode())

    def nvmlDeviceGetUtilizationRates(self, handle: _Device) -> SimpleNamespace:
        """Return `.gpu` and `.memory` utilisation in percent."""
        device = self._check(handle, "nvmlDeviceGetUtilizationRates")
        load = self._load(device)
        gpu = round(100 * load)
        return SimpleNamespace(gpu=gpu, memory=round(gpu * 0.45))

    def nvmlDeviceGetMemoryInfo(
        self, handle: _Device, version: int | None = None
    ) -> SimpleNamespace:
        """Return `.total`, `.used`, `.free` in bytes (and `.reserved` for the v2 struct)."""
        device = self._check(handle, "nvmlDeviceGetMemoryInfo")
        total = device.model.mem_total_bytes
        reserved = 512 * MIB if version == nvmlMemory_v2 else 0
        fill = self._memory_fill(device)
        used = reserved + int((total - reserved) * fill) // MIB * MIB
        info = SimpleNamespace(total=total, used=used, free=total - used)
        if version == nvmlMemory_v2:
            info.version, info.reserved = version, reserved
        return info

    def nvmlDeviceGetTemperature(self, handle: _Device, sensor: int) -> int:
        """Return the core temperature in °C."""
        device = self._check(handle, "nvmlDeviceGetTemperature")
        if sensor != NVML_TEMPERATURE_GPU:
            raise NVMLError_NotSupported()
        lagged = self._load(device, lag_s=90)
        return round(33 + 48 * lagged + 2 * _noise(device.uuid + "t", self._clock()))

    def nvmlDeviceGetPowerUsage(self, handle: _Device) -> int:
        """Return the power draw in mW."""
        device = self._check(handle, "nvmlDeviceGetPowerUsage")
        return self._power_mw(device)

    def nvmlDeviceGetEnforcedPowerLimit(self, handle: _Device) -> int:
        """Return the enforced power limit in mW."""
        return self._check(handle, "nvmlDeviceGetEnforcedPowerLimit").model.power_limit_mw

    def nvmlDeviceGetTotalEnergyConsumption(self, handle: _Device) -> int:
        """Return energy used since the driver loaded, in mJ (integrates the power draw)."""
        device = self._check(handle, "nvmlDeviceGetTotalEnergyConsumption")
        now_s = self._clock()
        with self._lock:
            if device.energy_read_s is not None and now_s > device.energy_read_s:
                device.energy_mj += self._power_mw(device) * (now_s - device.energy_read_s)
            device.energy_read_s = now_s
            return int(device.energy_mj) + 3_600_000_000 * (device.index + 1)

    def nvmlDeviceGetFanSpeed(self, handle: _Device) -> int:
        """Return the fan speed in percent; passively cooled models raise NotSupported."""
        device = self._check(handle, "nvmlDeviceGetFanSpeed")
        if not device.model.has_fan:
            raise NVMLError_NotSupported()
        return round(30 + 55 * self._load(device, lag_s=60))

    def nvmlDeviceGetClockInfo(self, handle: _Device, clock_type: int) -> int:
        """Return the SM or memory clock in MHz."""
        device = self._check(handle, "nvmlDeviceGetClockInfo")
        if clock_type == NVML_CLOCK_MEM:
            return device.model.mem_clock_mhz if self._load(device) > 0.02 else 405
        if clock_type == NVML_CLOCK_SM:
            boost = min(1.0, 3 * self._load(device))
            return round(210 + (device.model.max_sm_clock_mhz - 210) * boost)
        raise NVMLError_NotSupported()

    def nvmlDeviceGetPerformanceState(self, handle: _Device) -> int:
        """Return the P-state: 0 when busy, 8 when idle."""
        return 0 if self._load(self._check(handle, "nvmlDeviceGetPerformanceState")) > 0.02 else 8

    # -- the simulated load -----------------------------------------------------------------

    def _check_session(self) -> None:
        if not self._initialised:
            raise NVMLError_Uninitialized()

    def _check(self, device: _Device, function_name: str) -> _Device:
        self._check_session()
        if device.lost:
            raise NVMLError_GpuIsLost()
        if function_name in device.unsupported:
            raise NVMLError_NotSupported()
        return device

    def _cycle(self, device: _Device, t_s: float) -> float:
        """Return where in its ramp/train/idle cycle the GPU is, from 0 to 1."""
        return ((t_s + device.phase_s) % device.period_s) / device.period_s

    def _load(self, device: _Device, lag_s: float = 0.0) -> float:
        """Return the GPU's load from 0 to 1: ramp 10%, train 60% (with jitter), idle 30%."""
        t_s = self._clock() - lag_s
        position = self._cycle(device, t_s)
        if position < 0.1:
            base = position / 0.1
        elif position < 0.7:
            wave = 0.08 * math.sin(2 * math.pi * t_s / 97)
            base = 0.86 + wave + 0.1 * (_noise(device.uuid, t_s) - 0.5)
        else:
            base = 0.0
        return min(1.0, max(0.0, base))

    def _memory_fill(self, device: _Device) -> float:
        """Return the share of memory in use: it fills in the ramp and is freed when idle."""
        position = self._cycle(device, self._clock())
        if position < 0.1:
            return 0.02 + 0.8 * position / 0.1
        if position < 0.7:
            return 0.82 + 0.05 * _noise(device.uuid + "m", self._clock() / 30)
        return 0.0

    def _power_mw(self, device: _Device) -> int:
        model = device.model
        load = self._load(device)
        return int(model.idle_power_mw + (model.power_limit_mw * 0.92 - model.idle_power_mw) * load)
