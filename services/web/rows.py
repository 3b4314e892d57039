"""The rows the web process reads from the SQLite file, as typed values (no SQL, no I/O).

The pure modules and the handlers import these; the modules that read them (the *_reads
modules) build them from SQL. Times are UTC epoch seconds.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

DEFAULT_INTERVAL_S = 60.0  # a GPU whose sampling interval the file does not hold


@dataclass(frozen=True)
class GpuRow:
    """One GPU as the writer recorded it; times in UTC epoch seconds."""

    gpu_id: int
    gpu_uuid: str
    host: str
    gpu_index: int
    gpu_name: str
    pci_bus_id: str | None
    driver_version: str | None
    first_ts: float
    last_ts: float
    interval_s: float | None = None
    cuda_version: str | None = None
    limits: str | None = None  # JSON object of GpuLimits' fields, as the writer stored them

    @property
    def sampling_interval_s(self) -> float:
        """Return the GPU's sampling interval in seconds, DEFAULT_INTERVAL_S when unknown."""
        return self.interval_s or DEFAULT_INTERVAL_S


@dataclass(frozen=True)
class GpuLatest:
    """A GPU and its newest stored reading ({"ts", "error", <metric>...}), None if none.

    error_since_ts: when that reading is in error, the time (UTC epoch seconds) of the first
    reading of the unbroken run of errored readings it ends; otherwise None.
    last_xid: the newest XID the file holds for the GPU, (ts, code), None when none.
    """

    gpu: GpuRow
    latest: dict[str, Any] | None
    error_since_ts: float | None = None
    last_xid: tuple[float, int] | None = None  # (ts, code) of the GPU's newest stored XID


@dataclass(frozen=True)
class GpuBuckets:
    """A GPU and its buckets as the API's JSON array (history_reads.history_json_sql)."""

    gpu: GpuRow
    buckets_json: str


@dataclass(frozen=True)
class HistoryRows:
    """The answer of one history read: the series found, and requested UUIDs not in the file."""

    series: list[GpuBuckets]
    missing_uuids: list[str] = field(default_factory=list)
    missing_hosts: list[str] = field(default_factory=list)  # asked for, with no GPU in the file


@dataclass(frozen=True)
class ProcessList:
    """The processes of one GPU at one tick: ts None when no tick; processes None when unknown.

    Each process: {pid, kind, used_mem_bytes, visible, name, cmdline, user, container_id,
    container_name, since_ts}; since_ts is when its unbroken presence on the GPU began.
    """

    gpu: GpuRow | None
    ts: float | None
    processes: list[dict[str, Any]] | None


@dataclass(frozen=True)
class GpuIdle:
    """A GPU's newest reading, its process list there, and its idle-and-allocated run start."""

    gpu: GpuRow
    processes: ProcessList
    run_since_ts: float | None
