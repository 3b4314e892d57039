"""The GPU series of /metrics: NVIDIA dcgm-exporter's names, types, units, from a GpuReading.

- Each DcgmField is one dcgm-exporter metric: its exact name, help text (dcgm-exporter's, with
  its unit), type, and how to read it from a reading (None: left out, never sent as 0).
- Types are dcgm-exporter's own, even where NVML's value is a rate: DCGM_FI_DEV_PCIE_TX/RX_
  THROUGHPUT are declared counters by dcgm-exporter and carry NVML's KB/s, as there.
- Counters keep their exact names, without "_total" (metrics.exposition() sees to it).
- DCGM_FI_DEV_XID_ERRORS is the last XID the web received, with err_code and err_msg labels.
- DCGM_FI_PROF_* (DCGM's profiling fields) come from NVML's GPM on Hopper and newer: the activities
  are ratios from 0 to 1, as DCGM gives them (the wire carries percent), the PCIe rates bytes per
  second; all gauges, as dcgm-exporter declares them. A GPU without GPM sends none of them.
- MIG_FIELDS: the fields dcgm-exporter sends per MIG instance that a MigDevice has: its memory
  (NVML's own figures for the MIG device) and, where GPM gave it, its graphics activity.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from common.messages import GpuHealth, GpuLimits, GpuReading, MigDevice

MIB = 1 << 20


@dataclass(frozen=True)
class DcgmField:
    """One dcgm-exporter metric: its name, help text and how to read it from a GpuReading."""

    name: str
    documentation: str
    value: Callable[[GpuReading], float | None]
    counter: bool = False  # else a gauge


def _mib(value: int | None) -> int | None:
    return None if value is None else value // MIB


def _energy_mj(gpu: GpuReading) -> int | None:
    return None if gpu.energy_j is None else round(gpu.energy_j * 1000)


def _health(
    read: Callable[[GpuHealth], float | bool | None],
) -> Callable[[GpuReading], float | None]:
    """Return a reader of one health field (a yes-or-no as 1 or 0)."""

    def value(gpu: GpuReading) -> float | None:
        found = None if gpu.health is None else read(gpu.health)
        return None if found is None else int(found) if isinstance(found, bool) else found

    return value


def _limit(read: Callable[[GpuLimits], float | None]) -> Callable[[GpuReading], float | None]:
    """Return a reader of one of the GPU's limits."""
    return lambda gpu: None if gpu.limits is None else read(gpu.limits)


def _us(ns: int | None) -> int | None:
    return None if ns is None else ns // 1000


def _ratio(read: Callable[[GpuHealth], float | None]) -> Callable[[GpuReading], float | None]:
    """Return a reader of one GPM activity (percent) as DCGM's ratio from 0 to 1."""
    return _health(lambda h: None if (pct := read(h)) is None else pct / 100)


def _nvlink_kib(health: GpuHealth) -> int | None:
    tx, rx = health.nvlink_tx_kib, health.nvlink_rx_kib
    return None if tx is None or rx is None else tx + rx


ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
XID = "DCGM_FI_DEV_XID_ERRORS"

DCGM_FIELDS: tuple[DcgmField, ...] = (
    # dcgm-exporter's default counters
    DcgmField("DCGM_FI_DEV_SM_CLOCK", "SM clock frequency (in MHz).", lambda g: g.sm_clock_mhz),
    DcgmField(
        "DCGM_FI_DEV_MEM_CLOCK", "Memory clock frequency (in MHz).", lambda g: g.mem_clock_mhz
    ),
    DcgmField(
        "DCGM_FI_DEV_MEMORY_TEMP", "Memory temperature (in C).", _health(lambda h: h.mem_temp_c)
    ),
    DcgmField("DCGM_FI_DEV_GPU_TEMP", "GPU temperature (in C).", lambda g: g.temp_c),
    DcgmField("DCGM_FI_DEV_POWER_USAGE", "Power draw (in W).", lambda g: g.power_w),
    DcgmField(ENERGY, "Total energy consumption since boot (in mJ).", _energy_mj, counter=True),
    DcgmField(
        "DCGM_FI_DEV_PCIE_TX_THROUGHPUT",
        "Total number of bytes transmitted through PCIe TX (in KB) via NVML.",
        _health(lambda h: h.pcie_tx_kb_per_s),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_RX_THROUGHPUT",
        "Total number of bytes received through PCIe RX (in KB) via NVML.",
        _health(lambda h: h.pcie_rx_kb_per_s),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_REPLAY_COUNTER",
        "Total number of PCIe retries.",
        _health(lambda h: h.pcie_replays),
        counter=True,
    ),
    DcgmField("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", lambda g: g.util_gpu_pct),
    DcgmField("DCGM_FI_DEV_MEM_COPY_UTIL", "Memory utilization (in %).", lambda g: g.util_mem_pct),
    DcgmField(
        "DCGM_FI_DEV_ENC_UTIL", "Encoder utilization (in %).", _health(lambda h: h.enc_util_pct)
    ),
    DcgmField(
        "DCGM_FI_DEV_DEC_UTIL", "Decoder utilization (in %).", _health(lambda h: h.dec_util_pct)
    ),
    DcgmField(
        "DCGM_FI_DEV_FB_FREE",
        "Framebuffer memory free (in MiB).",
        # NVML's own free: total - used would count the driver's reserved memory as free; a tick
        # of an older sampler has none, which is left out rather than overstated
        lambda g: _mib(g.mem_free_bytes),
    ),
    DcgmField(
        "DCGM_FI_DEV_FB_USED", "Framebuffer memory used (in MiB).", lambda g: _mib(g.mem_used_bytes)
    ),
    DcgmField(
        "DCGM_FI_DEV_FB_RESERVED",
        "Framebuffer memory reserved (in MiB).",
        lambda g: _mib(g.mem_reserved_bytes),
    ),
    DcgmField(
        "DCGM_FI_DEV_NVLINK_BANDWIDTH_TOTAL",
        "Total number of NVLink bandwidth counters for all lanes (NVML's data TX + RX, in KiB).",
        _health(_nvlink_kib),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        "Ratio of time the graphics engine is active.",
        _ratio(lambda h: h.gr_engine_active_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_PIPE_TENSOR_ACTIVE",
        "Ratio of cycles the tensor (HMMA) pipe is active.",
        _ratio(lambda h: h.tensor_active_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_DRAM_ACTIVE",
        "Ratio of cycles the device memory interface is active sending or receiving data.",
        _ratio(lambda h: h.dram_active_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_PCIE_TX_BYTES",
        "The rate of data transmitted over the PCIe bus - including both protocol headers and"
        " data payloads - in bytes per second.",
        _health(lambda h: h.gpm_pcie_tx_bytes_per_s),
    ),
    DcgmField(
        "DCGM_FI_PROF_PCIE_RX_BYTES",
        "The rate of data received over the PCIe bus - including both protocol headers and"
        " data payloads - in bytes per second.",
        _health(lambda h: h.gpm_pcie_rx_bytes_per_s),
    ),
    DcgmField(
        "DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS",
        "Number of remapped rows for uncorrectable errors",
        _health(lambda h: h.remapped_rows_uncorrectable),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_CORRECTABLE_REMAPPED_ROWS",
        "Number of remapped rows for correctable errors",
        _health(lambda h: h.remapped_rows_correctable),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_ROW_REMAP_FAILURE",
        "Whether remapping of rows has failed",
        _health(lambda h: h.remap_failure),
    ),
    # more of DCGM's fields, under its names
    DcgmField(
        "DCGM_FI_DEV_FAN_SPEED", "Fan speed for the device (in %, 0-100).", lambda g: g.fan_pct
    ),
    DcgmField(
        "DCGM_FI_PROF_SM_ACTIVE",
        "The ratio of cycles an SM has at least 1 warp assigned.",
        _ratio(lambda h: h.sm_active_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_SM_OCCUPANCY",
        "The ratio of number of warps resident on an SM.",
        _ratio(lambda h: h.sm_occupancy_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_PIPE_FP64_ACTIVE",
        "Ratio of cycles the fp64 pipes are active.",
        _ratio(lambda h: h.fp64_active_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_PIPE_FP32_ACTIVE",
        "Ratio of cycles the fp32 pipes are active.",
        _ratio(lambda h: h.fp32_active_pct),
    ),
    DcgmField(
        "DCGM_FI_PROF_PIPE_FP16_ACTIVE",
        "Ratio of cycles the fp16 pipes are active.",
        _ratio(lambda h: h.fp16_active_pct),
    ),
    DcgmField(
        "DCGM_FI_DEV_ROW_REMAP_PENDING",
        "Whether remapping of rows is pending (a GPU reset applies it).",
        _health(lambda h: h.remap_pending),
    ),
    DcgmField(
        "DCGM_FI_DEV_CLOCK_THROTTLE_REASONS",
        "Current clock-event (throttle) reasons, NVML's bitmask.",
        _health(lambda h: h.clocks_event_reasons),
    ),
    DcgmField(
        "DCGM_FI_DEV_POWER_VIOLATION",
        "Throttling duration due to power constraints (in us).",
        _health(lambda h: _us(h.power_violation_ns)),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_THERMAL_VIOLATION",
        "Throttling duration due to thermal constraints (in us).",
        _health(lambda h: _us(h.thermal_violation_ns)),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_ECC_SBE_VOL_TOTAL",
        "Total number of single-bit volatile ECC errors.",
        _health(lambda h: h.ecc_corrected_volatile),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_ECC_DBE_VOL_TOTAL",
        "Total number of double-bit volatile ECC errors.",
        _health(lambda h: h.ecc_uncorrected_volatile),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_ECC_SBE_AGG_TOTAL",
        "Total number of single-bit persistent ECC errors.",
        _health(lambda h: h.ecc_corrected_aggregate),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_ECC_DBE_AGG_TOTAL",
        "Total number of double-bit persistent ECC errors.",
        _health(lambda h: h.ecc_uncorrected_aggregate),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_RETIRED_SBE",
        "Total number of retired pages due to single-bit errors.",
        _health(lambda h: h.retired_pages_sbe),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_RETIRED_DBE",
        "Total number of retired pages due to double-bit errors.",
        _health(lambda h: h.retired_pages_dbe),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_RETIRED_PENDING",
        "Total number of pages pending retirement.",
        _health(lambda h: h.retired_pages_pending),
        counter=True,
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_LINK_GEN",
        "PCIe current link generation.",
        _health(lambda h: h.pcie_link_gen),
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_LINK_WIDTH",
        "PCIe current link width.",
        _health(lambda h: h.pcie_link_width),
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_MAX_LINK_GEN",
        "PCIe maximum link generation.",
        _limit(lambda lim: lim.pcie_max_gen),
    ),
    DcgmField(
        "DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH",
        "PCIe maximum link width.",
        _limit(lambda lim: lim.pcie_max_width),
    ),
    DcgmField(
        "DCGM_FI_DEV_MAX_SM_CLOCK",
        "Maximum SM clock (in MHz).",
        _limit(lambda lim: lim.max_sm_clock_mhz),
    ),
    DcgmField(
        "DCGM_FI_DEV_MAX_MEM_CLOCK",
        "Maximum memory clock (in MHz).",
        _limit(lambda lim: lim.max_mem_clock_mhz),
    ),
    DcgmField(
        "DCGM_FI_DEV_ENFORCED_POWER_LIMIT",
        "Effective power limit (in W).",
        lambda g: g.power_limit_w,
    ),
    DcgmField(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT_MIN",
        "Minimum power management limit (in W).",
        _limit(lambda lim: lim.power_limit_min_w),
    ),
    DcgmField(
        "DCGM_FI_DEV_POWER_MGMT_LIMIT_MAX",
        "Maximum power management limit (in W).",
        _limit(lambda lim: lim.power_limit_max_w),
    ),
    DcgmField(
        "DCGM_FI_DEV_SLOWDOWN_TEMP",
        "Slowdown temperature (in C).",
        _limit(lambda lim: lim.temp_slowdown_c),
    ),
    DcgmField(
        "DCGM_FI_DEV_SHUTDOWN_TEMP",
        "Shutdown temperature (in C).",
        _limit(lambda lim: lim.temp_shutdown_c),
    ),
    DcgmField(
        "DCGM_FI_DEV_GPU_MAX_OP_TEMP",
        "Maximum operating temperature (in C).",
        _limit(lambda lim: lim.temp_max_operating_c),
    ),
    DcgmField(
        "DCGM_FI_DEV_MEM_MAX_OP_TEMP",
        "Maximum memory operating temperature (in C).",
        _limit(lambda lim: lim.mem_temp_max_c),
    ),
)

COUNTERS = tuple(field.name for field in DCGM_FIELDS if field.counter)


def _mig_free_mib(mig: MigDevice) -> int | None:
    used, total = mig.mem_used_bytes, mig.mem_total_bytes
    return None if used is None or total is None or used > total else (total - used) // MIB


# (name, how to read it from a MigDevice): each a field of DCGM_FIELDS, so its help and type
MIG_FIELDS: tuple[tuple[str, Callable[[MigDevice], float | None]], ...] = (
    ("DCGM_FI_DEV_FB_FREE", _mig_free_mib),
    ("DCGM_FI_DEV_FB_USED", lambda mig: _mib(mig.mem_used_bytes)),
    (
        "DCGM_FI_PROF_GR_ENGINE_ACTIVE",
        lambda mig: None if mig.gr_engine_active_pct is None else mig.gr_engine_active_pct / 100,
    ),
)
