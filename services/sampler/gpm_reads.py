"""Read a GPU's performance metrics (GPM: Hopper and newer) through NVML, once per tick.

GPM counts what the GPU's engines did between two samples that the reader takes itself:

- per GPU, once: whether it has GPM (nvmlGpmQueryDeviceSupport), then two samples
  (nvmlGpmSampleAlloc) and one nvmlGpmMetricsGet request naming every metric, both kept;
- every tick: one nvmlGpmSampleGet into the sample that does not hold the previous tick's, and one
  nvmlGpmMetricsGet for all metrics between the two. A GPU's first tick has one sample: its
  metrics are None, as after a failed sample;
- a GPU without GPM, a driver without the calls (FunctionNotFound) or a failed set-up: None,
  logged once by the caller, and the GPU is not asked again until the session or the GPU is new;
- a metric NVML could not compute (its own return is not success) is None, logged once;
- the samples are freed when the GPU is lost, when the session is re-opened, and at close.

MIG instances (read_mig), on a MIG-enabled GPU with GPM: two samples per GPU instance
(nvmlGpmMigSampleGet) and one nvmlGpmMetricsGet a tick per instance, for its graphics activity
alone (the utilization NVML gives no MIG device otherwise). They are freed with the GPU's, and
when its MIG layout (the instances' ids and UUIDs) changes. A driver without the call
(FunctionNotFound) or a GPU that refuses it (NotSupported): None, logged once by the caller, and
not asked again until the session or the GPU is new.

The activities are percent (0-100) of the time since the previous tick; PCIe is NVML's MiB/s,
sent as bytes per second.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.sampler.nvml_values import mib_per_s_bytes, nvml_function, pct_float

# GpuHealth field <- pynvml's metric id name, and its conversion to the field's unit
GPM_METRICS: tuple[tuple[str, str, Callable[[float | None], float | int | None]], ...] = (
    ("gr_engine_active_pct", "NVML_GPM_METRIC_GRAPHICS_UTIL", pct_float),
    ("sm_active_pct", "NVML_GPM_METRIC_SM_UTIL", pct_float),
    ("sm_occupancy_pct", "NVML_GPM_METRIC_SM_OCCUPANCY", pct_float),
    ("tensor_active_pct", "NVML_GPM_METRIC_ANY_TENSOR_UTIL", pct_float),
    ("dram_active_pct", "NVML_GPM_METRIC_DRAM_BW_UTIL", pct_float),
    ("fp64_active_pct", "NVML_GPM_METRIC_FP64_UTIL", pct_float),
    ("fp32_active_pct", "NVML_GPM_METRIC_FP32_UTIL", pct_float),
    ("fp16_active_pct", "NVML_GPM_METRIC_FP16_UTIL", pct_float),
    ("gpm_pcie_tx_bytes_per_s", "NVML_GPM_METRIC_PCIE_TX_PER_SEC", mib_per_s_bytes),
    ("gpm_pcie_rx_bytes_per_s", "NVML_GPM_METRIC_PCIE_RX_PER_SEC", mib_per_s_bytes),
)
# what a pynvml needs to have for GPM at all (an older nvidia-ml-py lacks them)
GPM_NAMES = (
    "nvmlGpmQueryDeviceSupport",
    "nvmlGpmSampleAlloc",
    "nvmlGpmSampleGet",
    "nvmlGpmMetricsGet",
    "nvmlGpmSampleFree",
    "c_nvmlGpmMetricsGet_t",
    "NVML_GPM_METRICS_GET_VERSION",
)
SUPPORT = "GPM support"  # the metric name the caller logs a GPU without GPM under
MIG_SAMPLE = "MIG GPM sample"  # ... and a failed (or missing) nvmlGpmMigSampleGet under

# (metric, function, *args) -> value, or None when NVML cannot give it (logged once by the caller)
Optional = Callable[..., Any]


@dataclass
class _Sampler:
    """One GPU's two samples, used in turn, and its metrics request."""

    samples: tuple[Any, Any]
    request: Any  # nvmlGpmMetricsGet's struct, its metric ids set once
    newest: int = -1  # which sample holds the previous tick's; -1: none


@dataclass
class _MigSamplers:
    """One MIG-enabled GPU's samplers, one per GPU instance, for the layout they were made for."""

    layout: tuple[tuple[int, str], ...]  # (GPU instance id, MIG device UUID), sorted
    samplers: dict[int, _Sampler]  # GPU instance id -> its sampler


class GpmReads:
    """The GPM reads of one GpuReader: per GPU its samples, and which GPUs have no GPM."""

    def __init__(self, nvml: Any) -> None:
        self._nvml = nvml
        self._available = all(hasattr(nvml, name) for name in GPM_NAMES)
        self._metrics = [
            (key, getattr(nvml, name), convert)
            for key, name, convert in GPM_METRICS
            if hasattr(nvml, name)
        ]
        self._samplers: dict[int, _Sampler] = {}
        self._without: set[int] = set()  # GPUs not asked again: no GPM, or its set-up failed
        self._mig: dict[int, _MigSamplers] = {}
        self._without_mig: set[int] = set()  # GPUs whose MIG instances are not asked again
        self._no_mig_call = _codes(
            nvml, ("NVML_ERROR_NOT_SUPPORTED", "NVML_ERROR_FUNCTION_NOT_FOUND")
        )

    def read(self, index: int, handle: Any, optional: Optional) -> dict[str, float | int | None]:
        """Return the GPU's GPM fields since the previous tick; {} where there are none."""
        if index in self._without:
            return {}
        sampler = self._samplers.get(index)
        if sampler is None:
            sampler = self._start(handle, optional)
            if sampler is None:
                self._without.add(index)
                return {}
            self._samplers[index] = sampler
        nvml = self._nvml
        taking = 1 if sampler.newest == 0 else 0
        sample = sampler.samples[taking]
        if optional("GPM sample", nvml.nvmlGpmSampleGet, handle, sample) is None:
            sampler.newest = -1  # the next tick starts a new pair
            return {}
        previous, sampler.newest = sampler.newest, taking
        if previous < 0:
            return {}
        request = sampler.request
        request.sample1 = sampler.samples[previous]
        request.sample2 = sample
        if optional("GPM metrics", nvml.nvmlGpmMetricsGet, request) is None:
            return {}
        return self._values(request, optional)

    def _start(self, handle: Any, optional: Optional) -> _Sampler | None:
        """Return a GPU's sampler, or None where it has no GPM (logged once by optional)."""
        nvml = self._nvml
        if not self._available:
            optional(SUPPORT, self._error(self._nvml.NVML_ERROR_FUNCTION_NOT_FOUND))
            return None
        support = optional(SUPPORT, nvml.nvmlGpmQueryDeviceSupport, handle)
        if support is None:
            return None
        if not support.isSupportedDevice:
            optional(SUPPORT, self._error(nvml.NVML_ERROR_NOT_SUPPORTED))
            return None
        first = optional("GPM samples", nvml.nvmlGpmSampleAlloc)
        second = None if first is None else optional("GPM samples", nvml.nvmlGpmSampleAlloc)
        if first is None or second is None:
            self._free(first)
            return None
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = len(self._metrics)
        for position, (_, metric_id, _) in enumerate(self._metrics):
            request.metrics[position].metricId = metric_id
        return _Sampler((first, second), request)

    def read_mig(
        self, index: int, handle: Any, instances: list[tuple[int, str]], optional: Optional
    ) -> dict[int, float | None]:
        """Return each MIG instance's graphics activity (percent) since the previous tick, by
        GPU instance id; {} where there is none (no GPM, no MIG, the first tick).

        instances: (GPU instance id, MIG device UUID) of each instance read this tick. Call it
        after read() of the same GPU in the same tick, which tells whether the GPU has GPM.
        """
        layout = tuple(sorted(set(instances)))
        held = self._mig.get(index)
        if held is not None and held.layout != layout:
            self._forget_mig(index)  # instances destroyed or made: their samples mean nothing
            held = None
        if not layout or index in self._without_mig or index not in self._samplers:
            return {}
        if held is None:
            held = self._mig[index] = _MigSamplers(layout, {})
        found: dict[int, float | None] = {}
        for instance_id in dict.fromkeys(instance for instance, _ in layout):
            sampler = held.samplers.get(instance_id)
            if sampler is None:
                sampler = self._mig_sampler(optional)
                if sampler is None:
                    return found
                held.samplers[instance_id] = sampler
            taking = 1 if sampler.newest == 0 else 0
            sample = sampler.samples[taking]
            refused: list[int] = []
            got = optional(MIG_SAMPLE, self._mig_sample_get(refused), handle, instance_id, sample)
            if got is None:
                sampler.newest = -1
                if refused:  # an older driver, or a GPU that does not sample its instances
                    self._forget_mig(index)
                    self._without_mig.add(index)
                    return {}
                continue
            previous, sampler.newest = sampler.newest, taking
            if previous < 0:
                continue
            request = sampler.request
            request.sample1 = sampler.samples[previous]
            request.sample2 = sample
            if optional("MIG GPM metrics", self._nvml.nvmlGpmMetricsGet, request) is None:
                continue
            entry = request.metrics[0]
            if entry.nvmlReturn == self._nvml.NVML_SUCCESS:
                found[instance_id] = pct_float(entry.value)
            else:
                found[instance_id] = optional(
                    "MIG GPM gr_engine_active_pct", self._error(entry.nvmlReturn)
                )
        return found

    def _mig_sample_get(self, refused: list[int]) -> Callable[..., Any]:
        """Return nvmlGpmMigSampleGet (or a stand-in raising FunctionNotFound) that notes in
        refused an error meaning the GPU's instances cannot be sampled at all."""
        nvml = self._nvml
        function = nvml_function(nvml, "nvmlGpmMigSampleGet")

        def sample_get(handle: Any, instance_id: int, sample: Any) -> Any:
            try:
                return function(handle, instance_id, sample)
            except nvml.NVMLError as error:
                if error.value in self._no_mig_call:
                    refused.append(error.value)
                raise

        return sample_get

    def _mig_sampler(self, optional: Optional) -> _Sampler | None:
        """Return a new sampler of one MIG instance's graphics activity, or None (logged)."""
        nvml = self._nvml
        metric_id = getattr(nvml, "NVML_GPM_METRIC_GRAPHICS_UTIL", None)
        first = optional("MIG GPM samples", nvml.nvmlGpmSampleAlloc)
        second = None if first is None else optional("MIG GPM samples", nvml.nvmlGpmSampleAlloc)
        if first is None or second is None or metric_id is None:
            self._free(first)
            self._free(second)
            return None
        request = nvml.c_nvmlGpmMetricsGet_t()
        request.version = nvml.NVML_GPM_METRICS_GET_VERSION
        request.numMetrics = 1
        request.metrics[0].metricId = metric_id
        return _Sampler((first, second), request)

    def _values(self, request: Any, optional: Optional) -> dict[str, float | int | None]:
        """Return each metric of an answered request in its field's unit, None where it failed."""
        success = self._nvml.NVML_SUCCESS
        found: dict[str, float | int | None] = {}
        for position, (key, _, convert) in enumerate(self._metrics):
            entry = request.metrics[position]
            if entry.nvmlReturn == success:
                found[key] = convert(entry.value)
            else:
                found[key] = optional(f"GPM {key}", self._error(entry.nvmlReturn))
        return found

    # -- lost GPUs and sessions --------------------------------------------------------------

    def forget(self, index: int) -> None:
        """Free a GPU's samples and its MIG instances' (it was lost): if it comes back, it is
        asked anew."""
        sampler = self._samplers.pop(index, None)
        self._without.discard(index)
        self._without_mig.discard(index)
        if sampler is not None:
            for sample in sampler.samples:
                self._free(sample)
        self._forget_mig(index)

    def forget_all(self) -> None:
        """Free every GPU's samples (the session is new, or ends)."""
        for index in {*self._samplers, *self._mig}:
            self.forget(index)
        self._without.clear()
        self._without_mig.clear()

    def _forget_mig(self, index: int) -> None:
        """Free the samples of a GPU's MIG instances."""
        held = self._mig.pop(index, None)
        if held is not None:
            for sampler in held.samplers.values():
                for sample in sampler.samples:
                    self._free(sample)

    def _free(self, sample: Any) -> None:
        if sample is None:
            return
        with contextlib.suppress(self._nvml.NVMLError, AttributeError):
            self._nvml.nvmlGpmSampleFree(sample)

    # -- errors the caller logs ------------------------------------------------------------

    def _error(self, code: int) -> Callable[[], Any]:
        nvml = self._nvml

        def failed() -> Any:
            raise nvml.NVMLError(code)

        return failed


def _codes(nvml: Any, names: tuple[str, ...]) -> frozenset[int]:
    """Return the values of pynvml's error names that the nvml module has."""
    return frozenset(getattr(nvml, name) for name in names if hasattr(nvml, name))
