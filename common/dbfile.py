"""The size of the SQLite file on disk, which the writer logs and the web reports."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path


def database_bytes(db_path: Path) -> int | None:
    """Return the bytes of the file and its -wal, or None when there is no file."""
    try:
        size = db_path.stat().st_size
    except OSError:
        return None
    with suppress(OSError):  # no -wal: the file was checkpointed and closed
        size += db_path.with_name(db_path.name + "-wal").stat().st_size
    return size
