# ruff: noqa: N801
# (the constants and the request struct keep pynvml's names, so that SimulatedNvml can stand in)
"""GPU performance metrics (GPM) for SimulatedNvml: Hopper's activity counters, tied to the load.

SimulatedNvml (simulated_nvml.py) checks each call for injected faults and hands the device to
GpmModel; the constants, the request struct's fields and the units are pynvml's.

- Only the Hopper models (a model name with H100 or H200) have GPM: elsewhere
  nvmlGpmQueryDeviceSupport answers isSupportedDevice 0, and a sample raises NotSupported, as
  NVML does on an older GPU.
- Each GPU has counters, as the hardware does: the time each engine was active (graphics, SMs,
  tensor, DRAM, FP64/32/16 pipes; SM occupancy as warp-seconds over the maximum) and the MiB that
  crossed PCIe, integrated between reads at up to GPM_STEPS points, as the health counters are.
  A sample (nvmlGpmSampleGet) holds them and the time; nvmlGpmMetricsGet divides the difference
  of two samples of one GPU by the time between them. Two samples taken at the same instant (a
  test's clock that stands still) give the rates at that instant.
- The activity follows the load: graphics activity is the load, the SMs a little below it;
  while training the tensor pipes are busy most of that time, DRAM moderately, and FP16 more than
  FP32 more than FP64; during the ramp (loading data) the tensor and FP16 pipes are mostly idle.
  PCIe carries what simulated_health's 20 ms throughput carries at the same load. A MIG-enabled
  GPU adds up its MIG devices' jobs (each on its own cycle), weighted by their memory share.
- A MIG instance (nvmlGpmMigSampleGet, by its GPU instance id) has counters of its own: its
  activity is its own job's load, over its own engines (the instance idles while its job does,
  whatever the others do). Two samples of different instances, or of an instance and the whole
  GPU, are refused, as two of different GPUs are.
"""

from __future__ import annotations

import ctypes
import math
import threading
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from services.sampler.simulated_nvml import SimulatedNvml, _Device, _MigDevice

NVML_SUCCESS = 0
NVML_ERROR_INVALID_ARGUMENT = 2
NVML_ERROR_NOT_SUPPORTED = 3
NVML_ERROR_ARGUMENT_VERSION_MISMATCH = 25
NVML_GPM_METRIC_GRAPHICS_UTIL = 1
NVML_GPM_METRIC_SM_UTIL = 2
NVML_GPM_METRIC_SM_OCCUPANCY = 3
NVML_GPM_METRIC_ANY_TENSOR_UTIL = 5
NVML_GPM_METRIC_DRAM_BW_UTIL = 10
NVML_GPM_METRIC_FP64_UTIL = 11
NVML_GPM_METRIC_FP32_UTIL = 12
NVML_GPM_METRIC_FP16_UTIL = 13
NVML_GPM_METRIC_PCIE_TX_PER_SEC = 20
NVML_GPM_METRIC_PCIE_RX_PER_SEC = 21
NVML_GPM_METRIC_MAX = 477  # pynvml's: the request holds this many entries
NVML_GPM_METRICS_GET_VERSION = 1
NVML_GPM_SUPPORT_VERSION = 1

GPM_NAMES = ("H100", "H200")  # Hopper: the simulated models with GPM
GPM_STEPS = 12  # points at which the counters' rates are sampled between two reads
GPM_STEP_S = 5.0  # at most one point per this many seconds, so that short ticks cost little
RAMP_END = 0.1  # the cycle's ramp (simulated_nvml's _load): loading data, little math
TRAIN_END = 0.7
PCIE_RX_MIB_S = 2860.0  # at full load: simulated_health's 3,000,000 KB/s
PCIE_TX_MIB_S = 380.0
PCIE_IDLE_MIB_S = 0.1
# counter position per metric id; the first eight are activities (a share of the time, 0-1)
POSITIONS = {
    NVML_GPM_METRIC_GRAPHICS_UTIL: 0,
    NVML_GPM_METRIC_SM_UTIL: 1,
    NVML_GPM_METRIC_SM_OCCUPANCY: 2,
    NVML_GPM_METRIC_ANY_TENSOR_UTIL: 3,
    NVML_GPM_METRIC_DRAM_BW_UTIL: 4,
    NVML_GPM_METRIC_FP64_UTIL: 5,
    NVML_GPM_METRIC_FP32_UTIL: 6,
    NVML_GPM_METRIC_FP16_UTIL: 7,
    NVML_GPM_METRIC_PCIE_TX_PER_SEC: 8,
    NVML_GPM_METRIC_PCIE_RX_PER_SEC: 9,
}
ACTIVITIES = 8
# per unit of load: (SM occupancy, tensor, DRAM, FP64, FP32, FP16) while training, and in the ramp
TRAINING_SHARES = (0.55, 0.72, 0.48, 0.01, 0.12, 0.34)
RAMP_SHARES = (0.30, 0.15, 0.25, 0.005, 0.30, 0.05)
SM_SHARE = 0.93  # SMs active per unit of graphics-engine activity


class GpmConstants:
    """pynvml's GPM constants, as attributes of the module SimulatedNvml stands in for."""

    NVML_ERROR_ARGUMENT_VERSION_MISMATCH = NVML_ERROR_ARGUMENT_VERSION_MISMATCH
    NVML_GPM_METRIC_GRAPHICS_UTIL = NVML_GPM_METRIC_GRAPHICS_UTIL
    NVML_GPM_METRIC_SM_UTIL = NVML_GPM_METRIC_SM_UTIL
    NVML_GPM_METRIC_SM_OCCUPANCY = NVML_GPM_METRIC_SM_OCCUPANCY
    NVML_GPM_METRIC_ANY_TENSOR_UTIL = NVML_GPM_METRIC_ANY_TENSOR_UTIL
    NVML_GPM_METRIC_DRAM_BW_UTIL = NVML_GPM_METRIC_DRAM_BW_UTIL
    NVML_GPM_METRIC_FP64_UTIL = NVML_GPM_METRIC_FP64_UTIL
    NVML_GPM_METRIC_FP32_UTIL = NVML_GPM_METRIC_FP32_UTIL
    NVML_GPM_METRIC_FP16_UTIL = NVML_GPM_METRIC_FP16_UTIL
    NVML_GPM_METRIC_PCIE_TX_PER_SEC = NVML_GPM_METRIC_PCIE_TX_PER_SEC
    NVML_GPM_METRIC_PCIE_RX_PER_SEC = NVML_GPM_METRIC_PCIE_RX_PER_SEC
    NVML_GPM_METRIC_MAX = NVML_GPM_METRIC_MAX
    NVML_GPM_METRICS_GET_VERSION = NVML_GPM_METRICS_GET_VERSION
    NVML_GPM_SUPPORT_VERSION = NVML_GPM_SUPPORT_VERSION


class c_nvmlGpmMetric_t(ctypes.Structure):
    """pynvml's c_nvmlGpmMetric_t, less the metric's description."""

    _fields_ = (
        ("metricId", ctypes.c_uint),
        ("nvmlReturn", ctypes.c_uint),
        ("value", ctypes.c_double),
    )


class c_nvmlGpmMetricsGet_t:
    """pynvml's c_nvmlGpmMetricsGet_t: the caller sets the version, the count, the two samples
    and each entry's metricId; nvmlGpmMetricsGet sets each entry's nvmlReturn and value."""

    def __init__(self) -> None:
        self.version = 0
        self.numMetrics = 0
        self.sample1: GpmSample | None = None
        self.sample2: GpmSample | None = None
        self.metrics = (c_nvmlGpmMetric_t * NVML_GPM_METRIC_MAX)()


@dataclass
class GpmSample:
    """An opaque GPM sample: the GPU's counters at one instant, once taken."""

    index: int | None = None  # the GPU it was taken of; None before the first nvmlGpmSampleGet
    gpu_instance_id: int | None = None  # the MIG instance it was taken of; None: the whole GPU
    taken_s: float = 0.0
    totals: tuple[float, ...] = ()
    rates: tuple[float, ...] = ()  # at taken_s: for two samples of the same instant
    freed: bool = False


@dataclass
class _Counters:
    read_s: float | None = None
    totals: list[float] = field(default_factory=lambda: [0.0] * len(POSITIONS))


class GpmModel:
    """The GPM counters of SimulatedNvml's GPUs; every call gets a device already checked."""

    def __init__(self, sim: SimulatedNvml) -> None:
        self._sim = sim
        self._counters: dict[tuple[int, int | None], _Counters] = {}  # (GPU, instance id)
        self._lock = threading.Lock()

    @staticmethod
    def supported(device: _Device) -> bool:
        """Return whether the GPU's model has GPM (Hopper)."""
        return any(name in device.model.name for name in GPM_NAMES)

    def query_support(self, device: _Device) -> SimpleNamespace:
        """Return nvmlGpmQueryDeviceSupport's struct: `.isSupportedDevice` 1 on Hopper, else 0."""
        return SimpleNamespace(
            version=NVML_GPM_SUPPORT_VERSION, isSupportedDevice=int(self.supported(device))
        )

    def alloc(self) -> GpmSample:
        """Return a new, empty sample."""
        return GpmSample()

    def free(self, sample: object) -> None:
        """Free a sample: it can be used no more."""
        self._live(sample).freed = True

    def take(self, device: _Device, sample: object, mig: _MigDevice | None = None) -> GpmSample:
        """Fill the sample with the GPU's counters now (or one MIG instance's); NotSupported
        without GPM."""
        live = self._live(sample)
        if not self.supported(device):
            raise self._sim.NVMLError_NotSupported()
        now_s = self._sim._clock()
        rates: tuple[float, ...] | None = None  # at the last point: now
        instance_id = None if mig is None else mig.gpu_instance_id
        with self._lock:
            counters = self._counters.setdefault((device.index, instance_id), _Counters())
            last_s = counters.read_s
            if last_s is not None and now_s > last_s:
                span_s = now_s - last_s
                steps = max(1, min(GPM_STEPS, math.ceil(span_s / GPM_STEP_S)))
                for step in range(1, steps + 1):
                    rates = self.rates(device, last_s + span_s * step / steps, mig)
                    for position, rate in enumerate(rates):
                        counters.totals[position] += rate * span_s / steps
            counters.read_s = now_s
            live.totals = tuple(counters.totals)
        live.index, live.gpu_instance_id, live.taken_s = device.index, instance_id, now_s
        live.rates = rates if rates is not None else self.rates(device, now_s, mig)
        return live

    def metrics(self, request: c_nvmlGpmMetricsGet_t) -> c_nvmlGpmMetricsGet_t:
        """Answer each of the request's metrics between its two samples."""
        if getattr(request, "version", None) != NVML_GPM_METRICS_GET_VERSION:
            raise self._sim.NVMLError(NVML_ERROR_ARGUMENT_VERSION_MISMATCH)
        first, second = self._live(request.sample1), self._live(request.sample2)
        if first.index is None or (first.index, first.gpu_instance_id) != (
            second.index,
            second.gpu_instance_id,
        ):
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        if not 0 <= request.numMetrics <= NVML_GPM_METRIC_MAX:
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        span_s = second.taken_s - first.taken_s
        for entry in request.metrics[: request.numMetrics]:
            position = POSITIONS.get(entry.metricId)
            if position is None:
                entry.nvmlReturn, entry.value = NVML_ERROR_NOT_SUPPORTED, 0.0
                continue
            if span_s > 0:
                rate = (second.totals[position] - first.totals[position]) / span_s
            else:
                rate = second.rates[position]
            entry.nvmlReturn = NVML_SUCCESS
            entry.value = 100 * rate if position < ACTIVITIES else rate
        return request

    def rates(
        self, device: _Device, at_s: float, mig: _MigDevice | None = None
    ) -> tuple[float, ...]:
        """Return each counter's rate at at_s: activities as shares of the time, PCIe in MiB/s.

        Of a MIG instance: its own job's load, as a share of the instance's own engines.
        """
        sim = self._sim
        if mig is not None:
            load = sim._load(device, at_s=at_s + sim._mig_shift_s(mig))
            training = True
        elif device.mig_devices:
            weights = [mig.mem_total_bytes for mig in device.mig_devices]
            loads = [sim._load(device, at_s=at_s + sim._mig_shift_s(m)) for m in device.mig_devices]
            load = sum(w * x for w, x in zip(weights, loads, strict=True)) / sum(weights)
            training = True  # each MIG device serves a model: tensor math, as when training
        else:
            load = sim._load(device, at_s=at_s)
            position = sim._cycle(device, at_s)
            training = RAMP_END <= position < TRAIN_END
        occupancy, tensor, dram, fp64, fp32, fp16 = TRAINING_SHARES if training else RAMP_SHARES
        return (
            load,
            SM_SHARE * load,
            occupancy * load,
            tensor * load,
            dram * load,
            fp64 * load,
            fp32 * load,
            fp16 * load,
            PCIE_IDLE_MIB_S / 2 + PCIE_TX_MIB_S * load,
            PCIE_IDLE_MIB_S + PCIE_RX_MIB_S * load,
        )

    def _live(self, sample: object) -> GpmSample:
        if not isinstance(sample, GpmSample) or sample.freed:
            raise self._sim.NVMLError(NVML_ERROR_INVALID_ARGUMENT)
        return sample
