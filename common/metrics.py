"""The per-GPU metrics: one list that the wire, the database and the API all derive from.

- The first twelve are a reading's own fields; the health metrics (version 8 of the schema) are
  fields of its GpuHealth, stored as whole numbers (a GPM activity rounded to the percent: on
  disk one or two bytes instead of eight; the wire and /metrics keep the fraction). SM occupancy
  and the FP64/FP32/FP16 pipes are live only (the API's health, /metrics): a reading's bytes
  on disk are budgeted (docs/performance.md).
- /api/v1/history answers CORE_METRIC_NAMES unless asked for others by name.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: its name (with unit), SQL column type, the nvidia-smi field it matches, and
    whether it is read from the reading's health."""

    name: str
    sql_type: str
    smi_field: str
    health: bool = False


METRICS: tuple[Metric, ...] = (
    Metric("util_gpu_pct", "INTEGER", "utilization.gpu"),
    Metric("util_mem_pct", "INTEGER", "utilization.memory"),
    Metric("mem_used_bytes", "INTEGER", "memory.used"),
    Metric("mem_total_bytes", "INTEGER", "memory.total"),
    Metric("temp_c", "INTEGER", "temperature.gpu"),
    Metric("power_w", "REAL", "power.draw"),
    Metric("power_limit_w", "REAL", "enforced.power.limit"),
    Metric("energy_j", "REAL", "(nvmlDeviceGetTotalEnergyConsumption)"),
    Metric("fan_pct", "INTEGER", "fan.speed"),
    Metric("sm_clock_mhz", "INTEGER", "clocks.sm"),
    Metric("mem_clock_mhz", "INTEGER", "clocks.mem"),
    Metric("pstate", "INTEGER", "pstate"),
    Metric("enc_util_pct", "INTEGER", "utilization.encoder", health=True),
    Metric("dec_util_pct", "INTEGER", "utilization.decoder", health=True),
    Metric("mem_temp_c", "INTEGER", "temperature.memory", health=True),
    Metric("pcie_tx_kb_per_s", "INTEGER", "(nvmlDeviceGetPcieThroughput TX)", health=True),
    Metric("pcie_rx_kb_per_s", "INTEGER", "(nvmlDeviceGetPcieThroughput RX)", health=True),
    Metric("gr_engine_active_pct", "INTEGER", "(GPM graphics activity)", health=True),
    Metric("sm_active_pct", "INTEGER", "(GPM SM activity)", health=True),
    Metric("tensor_active_pct", "INTEGER", "(GPM tensor activity)", health=True),
    Metric("dram_active_pct", "INTEGER", "(GPM DRAM bandwidth)", health=True),
)

METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in METRICS)
CORE_METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in METRICS if not metric.health)
HEALTH_METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in METRICS if metric.health)
