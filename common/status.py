"""The writer's status, shared with the web process through a small JSON file beside the DB.

A file, not a table: it must still be readable when the database is locked, read-only or on a
full disk, which is exactly when /healthz has to say so. It is replaced atomically (rename).
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec


class WriterStatus(msgspec.Struct, frozen=True):
    """What the writer reports about itself; times are UTC epoch seconds."""

    state: str  # "ok" or "degraded"
    updated_ts: float
    started_ts: float
    buffered_ticks: int = 0
    stored_ticks: int = 0
    stored_readings: int = 0
    malformed_messages: int = 0
    dropped_ticks: int = 0
    replay_gaps: int = 0
    lost_ticks: int = 0
    last_error: str | None = None
    last_error_ts: float | None = None
    last_flush_ts: float | None = None
    last_flush_duration_s: float | None = None  # wall time the last commit of a batch took
    last_maintenance_ts: float | None = None


def status_path(db_path: Path) -> Path:
    """Return where the writer's status file for this database lives."""
    return db_path.with_name(db_path.name + ".writer-status.json")


def write_status(db_path: Path, status: WriterStatus) -> None:
    """Replace the status file atomically; raise OSError if the folder cannot be written."""
    path = status_path(db_path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    temporary.write_bytes(msgspec.json.encode(status))
    temporary.replace(path)


def read_status(db_path: Path) -> WriterStatus | None:
    """Return the writer's last status, or None when there is none or it cannot be read."""
    try:
        return msgspec.json.decode(status_path(db_path).read_bytes(), type=WriterStatus)
    except (OSError, msgspec.DecodeError):
        return None
