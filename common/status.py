"""The writer's status, as the web process reads it: a message on a socket and a file.

Two channels, because either can fail alone. The writer publishes its status over ZeroMQ on an
endpoint that needs no disk (by default a Linux abstract-namespace socket named after the
database), so that a full or read-only disk under the database is reported at once. It also
keeps a small JSON file beside the database, replaced atomically (rename), which a web process
that cannot reach the socket (another machine, another network namespace) still reads. The web
takes the newer of the two.
"""

from __future__ import annotations

import hashlib
import os
from contextlib import suppress
from pathlib import Path

import msgspec

STATUS_TOPIC = b"pcw-writer-status"


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
    buffered_bytes: int = 0  # estimated memory the held ticks take
    buffer_limit_bytes: int = 0  # PCW_WRITER_BUFFER_BYTES: past it the oldest ticks are dropped
    db_reopened_ts: float | None = None  # when the file was last found replaced or deleted
    db_reopened_reason: str | None = None


def status_endpoint(configured: str, db_path: Path) -> str:
    """Return where the writer publishes its status: PCW_STATUS_ENDPOINT, or one derived
    from the database's absolute path, so that every database has its own and the writer and
    web process of one stack find each other without a setting."""
    if configured:
        return configured
    digest = hashlib.sha256(str(db_path.resolve()).encode()).hexdigest()[:24]
    return f"ipc://@pycudawatch-writer-status-{digest}"


def encode_status(status: WriterStatus) -> list[bytes]:
    """Return the status message's frames: [STATUS_TOPIC, the status as JSON]."""
    return [STATUS_TOPIC, msgspec.json.encode(status)]


def decode_status(frames: list[bytes]) -> WriterStatus | None:
    """Return the status of a message, or None when it is not a valid status message."""
    if len(frames) != 2 or frames[0] != STATUS_TOPIC:
        return None
    try:
        return msgspec.json.decode(frames[1], type=WriterStatus)
    except msgspec.DecodeError:
        return None


def status_path(db_path: Path) -> Path:
    """Return where the writer's status file for this database lives."""
    return db_path.with_name(db_path.name + ".writer-status.json")


def write_status(db_path: Path, status: WriterStatus) -> None:
    """Replace the status file atomically; raise OSError if the folder cannot be written.

    A temporary file that could not be written whole (a full disk) is removed, never left.
    """
    path = status_path(db_path)
    temporary = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_bytes(msgspec.json.encode(status))
        temporary.replace(path)
    except BaseException:
        with suppress(OSError):
            temporary.unlink(missing_ok=True)
        raise


def read_status(db_path: Path) -> WriterStatus | None:
    """Return the writer's last status from its file, or None when there is none or it cannot
    be read."""
    try:
        return msgspec.json.decode(status_path(db_path).read_bytes(), type=WriterStatus)
    except (OSError, msgspec.DecodeError):
        return None


def newest(*statuses: WriterStatus | None) -> WriterStatus | None:
    """Return the most recently updated of the statuses given, None when there is none."""
    present = [status for status in statuses if status is not None]
    return max(present, key=lambda status: status.updated_ts, default=None)
