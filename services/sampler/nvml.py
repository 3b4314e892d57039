"""Read every GPU through NVML once per tick; the only module that imports `pynvml`.

The `nvml` object handed to GpuReader is either the real `pynvml` module or SimulatedNvml, which
offers the same names, shapes and error classes, so this code runs unchanged over both.

Errors, as nvitop handles them:
- a metric raising NotSupported (or any other per-call error) is None, logged once per GPU and
  metric; it never costs the rest of the GPU's reading;
- a GPU raising GpuIsLost (or failing to give a handle) is marked in error for that tick, and the
  other GPUs go on;
- a driver-level error (uninitialised, driver not loaded, library gone, RM mismatch) ends the NVML
  session; it is re-initialised with exponential backoff while ticks carry the error.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.config import Config
from common.messages import GpuReading

log = logging.getLogger(__name__)

# NVML return codes after which the whole session is gone, not one GPU or metric.
DRIVER_LEVEL_CODES = frozenset({1, 9, 12, 18})  # uninitialised, not loaded, no library, mismatch
GPU_LOST_CODES = frozenset({15, 16})  # GPU is lost, GPU requires reset
PSTATE_UNKNOWN = 32
ERROR_TEXT_CHARS = 256  # the codec's limit on text
REINIT_BACKOFF_S = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0)


class NvmlUnavailableError(RuntimeError):
    """NVML cannot be used at all on this machine (no library or no driver)."""


class _DriverLevelError(Exception):
    """Raised inside a tick when the NVML session must be re-initialised."""


class _GpuLostError(Exception):
    """Raised inside a GPU's reading when the device itself is gone."""


def load_nvml(config: Config) -> Any:
    """Return the NVML module for config.source: `pynvml`, or a SimulatedNvml instance."""
    if config.source == "simulated":
        from services.sampler.simulated_nvml import SimulatedNvml

        return SimulatedNvml(config.sim_gpus, host=config.host_name, names=config.sim_names)
    try:
        import pynvml
    except ImportError as error:
        raise NvmlUnavailableError(f"the nvidia-ml-py package is missing ({error})") from None
    return pynvml


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


class GpuReader:
    """Read all GPUs of the host; keeps NVML's session, identities, and what was logged."""

    def __init__(self, nvml: Any, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._nvml = nvml
        self._monotonic = monotonic
        self._session = False
        self._driver_version: str | None = None
        self._identities: dict[int, GpuIdentity] = {}
        self._memory_v2: dict[int, bool] = {}
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
            if error.value in (9, 12):  # driver not loaded, library not found
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
            return TickReading(self._driver_version, self._errored_gpus(), self._last_error)
        try:
            gpus = [self._read_gpu(index) for index in range(self._device_count())]
        except _DriverLevelError as error:
            self._session = False
            self._session_failed(f"NVML session lost: {error}")
            return TickReading(self._driver_version, self._errored_gpus(), self._last_error)
        return TickReading(self._driver_version, [g for g in gpus if g is not None], None)

    def close(self) -> None:
        """End the NVML session if one is open."""
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
        self._memory_v2.clear()
        try:
            self._driver_version = _text(self._nvml.nvmlSystemGetDriverVersion())
        except self._nvml.NVMLError as error:
            log.warning("driver version not available: %s", error)

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
        return [self._identities[index] for index in sorted(self._identities)]

    def _call(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Call NVML, turning session-level and device-level errors into our own."""
        try:
            return function(*args, **kwargs)
        except self._nvml.NVMLError as error:
            if error.value in DRIVER_LEVEL_CODES:
                raise _DriverLevelError(str(error)) from None
            if error.value in GPU_LOST_CODES:
                raise _GpuLostError(str(error)) from None
            raise

    def _device_count(self) -> int:
        return int(self._call(self._nvml.nvmlDeviceGetCount))

    # -- one GPU -----------------------------------------------------------------------------

    def _read_gpu(self, index: int) -> GpuReading | None:
        try:
            handle = self._call(self._nvml.nvmlDeviceGetHandleByIndex, index)
            identity = self._identity(index, handle)
            reading = self._metrics(identity, handle)
        except _GpuLostError as error:
            return self._lost(index, str(error))
        except self._nvml.NVMLError as error:
            return self._lost(index, f"NVML error: {error}")
        if index in self._lost_logged:
            log.info("GPU %d (%s) answers again", index, identity.uuid)
            self._lost_logged.discard(index)
        return reading

    def _lost(self, index: int, message: str) -> GpuReading | None:
        message = message[:ERROR_TEXT_CHARS]
        identity = self._identities.get(index)
        if index not in self._lost_logged:
            log.error("GPU %d (%s): %s", index, identity.uuid if identity else "?", message)
            self._lost_logged.add(index)
        if identity is None:  # never identified: nothing to attach the error to
            return None
        return identity.reading(error=message)

    def _identity(self, index: int, handle: Any) -> GpuIdentity:
        identity = self._identities.get(index)
        if identity is None:
            nvml = self._nvml
            pci = self._optional(f"gpu{index}", "pci_bus_id", nvml.nvmlDeviceGetPciInfo, handle)
            identity = GpuIdentity(
                index=index,
                uuid=_text(self._call(nvml.nvmlDeviceGetUUID, handle)),
                name=_text(self._call(nvml.nvmlDeviceGetName, handle))[:256],
                pci_bus_id=_text(pci.busId) if pci is not None else None,
            )
            self._identities[index] = identity
            log.info(
                "GPU %d: %s %s at %s", index, identity.name, identity.uuid, identity.pci_bus_id
            )
        return identity

    def _optional(self, uuid: str, metric: str, function: Callable[..., Any], *args: Any) -> Any:
        """Return function(*args), or None when NVML cannot give it (logged once)."""
        try:
            return self._call(function, *args)
        except self._nvml.NVMLError as error:
            if (uuid, metric) not in self._logged:
                self._logged.add((uuid, metric))
                log.warning("GPU %s: %s not available (%s); reported as null", uuid, metric, error)
            return None

    def _memory(self, identity: GpuIdentity, handle: Any) -> Any:
        """Return memory info, from the v2 struct where the driver has it."""
        nvml = self._nvml
        if self._memory_v2.get(identity.index, True):
            try:
                info = self._call(nvml.nvmlDeviceGetMemoryInfo, handle, version=nvml.nvmlMemory_v2)
                self._memory_v2[identity.index] = True
                return info
            except (nvml.NVMLError, TypeError, AttributeError):
                info = self._optional(identity.uuid, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)
                # only a driver that answers v1 but not v2 lacks v2; a passing failure of both
                # must not switch this GPU for good to v1, whose `used` leaves out reserved memory
                if info is not None:
                    self._memory_v2[identity.index] = False
                return info
        return self._optional(identity.uuid, "memory", nvml.nvmlDeviceGetMemoryInfo, handle)

    def _metrics(self, identity: GpuIdentity, handle: Any) -> GpuReading:
        """Read each metric once; unit conversions from NVML's units happen here."""
        nvml, uuid = self._nvml, identity.uuid

        def get(metric: str, function: Callable[..., Any], *args: Any) -> Any:
            return self._optional(uuid, metric, function, handle, *args)

        util = get("utilization", nvml.nvmlDeviceGetUtilizationRates)
        memory = self._memory(identity, handle)
        power_mw = get("power_w", nvml.nvmlDeviceGetPowerUsage)
        limit_mw = get("power_limit_w", nvml.nvmlDeviceGetEnforcedPowerLimit)
        energy_mj = get("energy_j", nvml.nvmlDeviceGetTotalEnergyConsumption)
        pstate = get("pstate", nvml.nvmlDeviceGetPerformanceState)
        return identity.reading(
            util_gpu_pct=_clamp_pct(util.gpu) if util is not None else None,
            util_mem_pct=_clamp_pct(util.memory) if util is not None else None,
            mem_used_bytes=int(memory.used) if memory is not None else None,
            mem_total_bytes=int(memory.total) if memory is not None else None,
            temp_c=get("temp_c", nvml.nvmlDeviceGetTemperature, nvml.NVML_TEMPERATURE_GPU),
            power_w=power_mw / 1000 if power_mw is not None else None,
            power_limit_w=limit_mw / 1000 if limit_mw is not None else None,
            energy_j=energy_mj / 1000 if energy_mj is not None else None,
            fan_pct=_clamp_pct(get("fan_pct", nvml.nvmlDeviceGetFanSpeed)),
            sm_clock_mhz=get("sm_clock_mhz", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_SM),
            mem_clock_mhz=get("mem_clock_mhz", nvml.nvmlDeviceGetClockInfo, nvml.NVML_CLOCK_MEM),
            pstate=None if pstate is None or pstate == PSTATE_UNKNOWN else int(pstate),
        )


def _clamp_pct(value: int | None) -> int | None:
    """Return a percentage within 0-100 (some fans report over 100 %), or None."""
    return None if value is None else max(0, min(100, int(value)))
