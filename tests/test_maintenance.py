"""The hourly maintenance: a purge whose reclaim is proportional to what it freed.

Bytes written are read from /proc/self/io (`wchar`: what this process handed to write(), the
SQLite file, its WAL and any temporary file alike) around one purge of a real file.
"""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from common.schema import migrate
from services.writer.store import Store, file_bytes
from tests.bench.generate import fast_host_ticks

T0 = 1_700_006_400.0
INTERVAL_S = 60.0
DAY_TICKS = 1440
GPUS = 8


def written_bytes() -> int:
    """Return the bytes this process has passed to write() so far."""
    for line in Path("/proc/self/io").read_text().splitlines():
        name, _, value = line.partition(":")
        if name == "wchar":
            return int(value)
    raise AssertionError("no wchar in /proc/self/io")


def fill(path: Path, days: float = 1.0) -> None:
    """Write `days` of minutely ticks of one 8-GPU host into the file, as the writer does."""
    store = Store(path)
    batch = []
    for tick in fast_host_ticks("h", GPUS, T0, int(days * DAY_TICKS), INTERVAL_S):
        batch.append(tick)
        if len(batch) == 60:
            store.write(batch)
            batch = []
    store.write(batch)
    store.close()


def checkpointed_bytes(path: Path) -> int:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return file_bytes(path)


def purge_written(path: Path, before_ts: float, mode: str | None = None) -> int:
    """Return the bytes one purge wrote: with the writer's default PCW_VACUUM when mode is None."""
    store = Store(path)
    started = written_bytes()
    if mode is None:
        store.purge(before_ts)
    else:
        store.purge(before_ts, mode)
    written = written_bytes() - started
    store.close()
    return written


def pragma(path: Path, name: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"PRAGMA {name}").fetchone()[0]
    finally:
        conn.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[int, Path]:
    """{days: a file of that many days of one 8-GPU host}."""
    folder = tmp_path_factory.mktemp("maintenance")
    made = {}
    for days in (1, 4):
        made[days] = folder / f"{days}d.db"
        fill(made[days], days)
    return made


def copy_of(source: Path, tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = tmp_path / "gpu_stats.db"
    src = sqlite3.connect(source)
    dst = sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()
    return target


def test_a_purge_writes_in_proportion_to_what_it_freed_not_to_the_file(files, tmp_path):
    written, sizes = {}, {}
    for days, source in files.items():
        path = copy_of(source, tmp_path / f"{days}")
        sizes[days] = checkpointed_bytes(path)
        written[days] = purge_written(path, T0 + 3600)  # the same hour from each
        assert pragma(path, "freelist_count") == 0  # what it freed went back to the disk
        assert checkpointed_bytes(path) < sizes[days]
        assert pragma(path, "auto_vacuum") == 2  # incremental

    assert sizes[4] > 3.5 * sizes[1]
    # a file four times larger: the same hour purged costs about the same, a small part of it
    assert written[4] < 1.25 * written[1], written
    assert written[4] < sizes[4] / 4, (written, sizes)


def test_a_purge_with_nothing_old_writes_next_to_nothing(files, tmp_path):
    path = copy_of(files[4], tmp_path)
    size = checkpointed_bytes(path)

    written = purge_written(path, T0 - 3600)

    assert written < size / 50, (written, size)


def test_the_full_setting_still_rewrites_the_whole_file_each_run(files, tmp_path):
    path = copy_of(files[1], tmp_path)
    size_before = checkpointed_bytes(path)

    written = purge_written(path, T0 + 3600, "full")

    assert written >= size_before * 0.9, (written, size_before)
    assert pragma(path, "freelist_count") == 0


def legacy_file(path: Path) -> None:
    """A file whose first table was made before its auto_vacuum was set: auto_vacuum NONE."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("CREATE TABLE metrics (id INTEGER PRIMARY KEY, ts TEXT, gpu_util REAL)")
    migrate(conn)
    assert conn.execute("PRAGMA auto_vacuum").fetchone()[0] == 0
    conn.close()


def test_a_file_without_auto_vacuum_is_converted_once_then_reclaimed_incrementally(
    tmp_path, caplog
):
    path = tmp_path / "gpu_stats.db"
    legacy_file(path)
    fill(path, days=0.5)
    caplog.set_level(logging.INFO)
    store = Store(path)

    first = store.purge(T0 + 600, "incremental")

    assert first.vacuum == "converted by a full vacuum"
    assert pragma(path, "auto_vacuum") == 2
    assert any("incremental auto-vacuum" in r.getMessage() for r in caplog.records)
    caplog.clear()

    second = store.purge(T0 + 1200, "incremental")
    store.close()

    assert second.vacuum == "incremental vacuum"
    assert second.rows_deleted == 10 * GPUS
    assert not any("incremental auto-vacuum" in r.getMessage() for r in caplog.records)
    assert pragma(path, "freelist_count") == 0
