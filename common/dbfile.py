"""The SQLite file on disk: its size, which the writer logs and the web reports, and which
file a path names now, so that both notice when it is deleted or replaced under them; and the
page cache each of their connections may hold."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

# (st_dev, st_ino): the file a path names; another pair, or None, means it was replaced/deleted.
FileIdentity = tuple[int, int]


def database_bytes(db_path: Path) -> int | None:
    """Return the bytes of the file and its -wal, or None when there is no file."""
    try:
        size = db_path.stat().st_size
    except OSError:
        return None
    with suppress(OSError):  # no -wal: the file was checkpointed and closed
        size += db_path.with_name(db_path.name + "-wal").stat().st_size
    return size


def file_identity(path: Path) -> FileIdentity | None:
    """Return the device and inode of the file at path, or None when there is none."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def journal_paths(db_path: Path) -> tuple[Path, Path]:
    """Return the paths of the file's write-ahead log and its shared-memory index."""
    return db_path.with_name(db_path.name + "-wal"), db_path.with_name(db_path.name + "-shm")


def cache_size_pragma(cache_bytes: int) -> str:
    """Return the PRAGMA that bounds a connection's page cache to cache_bytes (whole KiB).

    A negative cache_size is SQLite's size in KiB, whatever the page size; a positive one would
    count pages.
    """
    return f"PRAGMA cache_size = {-(int(cache_bytes) // 1024)}"
