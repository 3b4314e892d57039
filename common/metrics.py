"""The per-GPU metrics: one list that the wire, the database and the API all derive from."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Metric:
    """One metric: its name (with unit), SQL column type, and the nvidia-smi field it matches."""

    name: str
    sql_type: str
    smi_field: str


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
)

METRIC_NAMES: tuple[str, ...] = tuple(metric.name for metric in METRICS)
