"""The database file as a user can break it, with the real processes: a path that cannot be a
database at start, a disk that fills up under the running writer, the file deleted while both
the writer and the web process have it open.

A full and a read-only file system are real ones: a small tmpfs, and an ext4 image on a loop
device that turns read-only under the running writer as a failing disk does (errors=remount-ro),
mounted for the test; skipped where this machine does not let the test mount them, failed in CI.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest

from common.status import WriterStatus, read_status, write_status
from services.writer.store import Store
from tests.ci import unavailable
from tests.stack import Stack, healthz, missing_and_duplicated, run_service, stack_env, wait_until

START_TIMEOUT_S = 60.0


def _problems(stack: Stack) -> str:
    return "\n".join(healthz(stack)[1]["problems"])


@contextmanager
def _mounted(path: Path, mount_args: list[str], what: str) -> Iterator[Path]:
    """Run `mount *mount_args path` for the block (skip where it is refused), then unmount."""
    path.mkdir(parents=True)
    mounted = subprocess.run(["mount", *mount_args, str(path)], capture_output=True, text=True)
    if mounted.returncode != 0:
        unavailable(f"cannot mount {what} here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@contextmanager
def small_filesystem(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of size_bytes at path for the block; skip the test where that is refused."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        unavailable("mounting a small file system needs root and mount(8)")
    tmpfs = ["-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs"]
    with _mounted(path, tmpfs, "a small file system"):
        yield path


@contextmanager
def ext4_filesystem(path: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a loop-device ext4 file system at path that turns read-only on its first error;
    skip the test where that is refused."""
    if os.geteuid() != 0 or shutil.which("mkfs.ext4") is None:
        unavailable("a loop-device file system needs root and mkfs.ext4")
    image = path.with_name(path.name + ".img")
    with image.open("wb") as out:
        out.truncate(size_bytes)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(image)], check=True, capture_output=True)
    with _mounted(path, ["-o", "loop,errors=remount-ro", str(image)], "a loop device"):
        yield path


def _turn_read_only(folder: Path) -> None:
    """Make ext4 act on an error as errors=remount-ro says: the file system turns read-only
    under the processes that have files open on it, as a failing disk makes it."""
    device = subprocess.run(
        ["findmnt", "-no", "SOURCE", str(folder)], check=True, capture_output=True, text=True
    ).stdout.strip()
    trigger = Path(f"/sys/fs/ext4/{Path(device).name}/trigger_fs_error")
    if not trigger.exists():
        unavailable("this kernel cannot trigger an ext4 error")
    trigger.write_text("1")
    with pytest.raises(OSError) as caught:
        (folder / "probe").write_bytes(b"x")
    assert caught.value.errno == errno.EROFS


def _fill(folder: Path) -> Path:
    """Write a file in folder until its file system is full; return the file."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as out:
        try:
            while True:
                out.write(b"\0" * 4096)
        except OSError as error:
            assert error.errno == errno.ENOSPC, error
    return filler


# -- a path that cannot be a database stops the writer at start ----------------------------------


def _folder(tmp_path: Path) -> Path:
    path = tmp_path / "db" / "gpu_stats.db"
    path.mkdir(parents=True)
    return path


def _device(tmp_path: Path) -> Path:
    return Path("/dev/null")


def _corrupt(tmp_path: Path) -> Path:
    path = tmp_path / "gpu_stats.db"
    path.write_bytes(b"this is not an SQLite database\n" * 200)
    return path


UNUSABLE = {
    "folder": (_folder, "it is a folder"),
    "device": (_device, "not a regular file"),
    "corrupt": (_corrupt, "not an SQLite database"),
}


@pytest.mark.parametrize("kind", sorted(UNUSABLE))
def test_a_path_that_cannot_be_a_database_stops_the_writer_with_one_line_naming_it(tmp_path, kind):
    make, reason = UNUSABLE[kind]
    db_path = make(tmp_path)
    env = stack_env(tmp_path, {"PCW_DB_PATH": str(db_path)})

    result = run_service("writer", env, START_TIMEOUT_S)

    assert result.returncode == 2, result.stderr
    named = [line for line in result.stderr.splitlines() if "PCW_DB_PATH" in line]
    assert len(named) == 1, result.stderr
    assert "cannot start" in named[0] and str(db_path) in named[0] and reason in named[0]


def test_a_database_on_a_read_only_file_system_stops_the_writer_with_one_line_naming_it(
    tmp_path,
):
    with small_filesystem(tmp_path / "fs", 4 << 20) as folder:
        db_path = folder / "gpu_stats.db"
        store = Store(db_path)
        store.open()  # a good database, made before the file system turns read-only
        store.close()
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        env = stack_env(tmp_path, {"PCW_DB_PATH": str(db_path)})

        result = run_service("writer", env, START_TIMEOUT_S)

    assert result.returncode == 2, result.stderr
    named = [line for line in result.stderr.splitlines() if "PCW_DB_PATH" in line]
    assert len(named) == 1 and "read-only" in named[0], result.stderr


@contextmanager
def _healthy_stack(tmp_path: Path, folder: Path) -> Iterator[Stack]:
    """Run 4 simulated GPUs every 0.5 s with the file in folder; yield once /healthz is ok."""
    env = {
        "PCW_DB_PATH": str(folder / "gpu_stats.db"),
        "PCW_SIM_GPUS": "4",
        "PCW_INTERVAL_S": "0.5",
    }
    with Stack(tmp_path, env, supervised=False) as stack:
        stack.wait_ticks(3)
        stack.wait_web()
        wait_until(lambda: healthz(stack)[0] == 200, 30, "/healthz to say ok", stack)
        yield stack


# -- a full disk under the running writer -------------------------------------------------------


def test_a_full_disk_reaches_healthz_with_its_error_and_leaves_no_temporary_file(tmp_path):
    with small_filesystem(tmp_path / "fs", 8 << 20) as folder:
        with _healthy_stack(tmp_path, folder) as stack:
            filler = _fill(folder)
            wait_until(
                lambda: "disk is full" in _problems(stack),
                30,
                "/healthz to name the full disk",
                stack,
            )
            code, health = healthz(stack)
            assert code == 503 and health["writer"]["state"] == "degraded", health
            # Told over the socket: the status file could not be written, and is not the source.
            on_disk = read_status(stack.db_path)
            assert on_disk is None or on_disk.last_error is None
            assert not list(folder.glob("*.tmp")), sorted(p.name for p in folder.iterdir())

            filler.unlink()
            wait_until(lambda: healthz(stack)[0] == 200, 60, "/healthz to say ok again", stack)
            stack.terminate()

        # nothing lost meanwhile: every GPU has a reading in every slot, each stored once
        _expected, missing, duplicated = missing_and_duplicated(stack, 0.5)
        assert (missing, duplicated) == (0, 0)
        assert len(stack.query("SELECT DISTINCT gpu_uuid FROM readings")) == 4


def test_a_file_system_turned_read_only_under_the_writer_reaches_healthz_with_its_error(
    tmp_path,
):
    with (
        ext4_filesystem(tmp_path / "fs", 32 << 20) as folder,
        _healthy_stack(tmp_path, folder) as stack,
    ):
        _turn_read_only(folder)
        wait_until(
            lambda: "the writer is degraded: cannot store readings" in _problems(stack),
            30,
            "/healthz to name the writer's error",
            stack,
        )
        code, health = healthz(stack)
        assert code == 503 and health["writer"]["state"] == "degraded", health
        on_disk = read_status(stack.db_path)  # the file could not say it
        assert on_disk is not None and on_disk.last_error is None


def test_a_status_file_that_does_not_fit_on_a_full_disk_leaves_no_temporary_file(tmp_path):
    with small_filesystem(tmp_path / "fs", 1 << 20) as folder:
        db_path = folder / "gpu_stats.db"
        write_status(db_path, WriterStatus(state="ok", updated_ts=1.0, started_ts=0.0))
        _fill(folder)

        with pytest.raises(OSError) as caught:
            write_status(db_path, WriterStatus(state="degraded", updated_ts=2.0, started_ts=0.0))

        assert caught.value.errno == errno.ENOSPC
        assert sorted(p.name for p in folder.iterdir()) == [
            "filler",
            "gpu_stats.db.writer-status.json",
        ]
        assert read_status(db_path).state == "ok"  # the last whole one


# -- the file deleted while the writer and the web process have it open -------------------------


def test_a_database_deleted_while_running_is_made_anew_and_healthz_says_so(tmp_path):
    env = {"PCW_SIM_GPUS": "2", "PCW_INTERVAL_S": "0.5"}
    with Stack(tmp_path, env, supervised=False) as stack:
        stack.wait_ticks(3)
        stack.wait_web()
        wait_until(lambda: healthz(stack)[0] == 200, 30, "/healthz to say ok", stack)

        stack.db_path.unlink()  # the -wal and -shm stay, as a careless `rm` leaves them
        deleted_ts = time.time()

        def stored_since_deleted() -> int:
            if not stack.db_path.exists():
                return 0
            try:
                rows = stack.query("SELECT count(*) FROM readings WHERE ts > ?", (deleted_ts,))
            except sqlite3.OperationalError:
                return 0
            return int(rows[0][0])

        wait_until(lambda: stored_since_deleted() >= 6, 30, "readings in a new file", stack)
        assert stack.query("PRAGMA integrity_check") == [("ok",)]
        wait_until(
            lambda: "was deleted" in _problems(stack),
            30,
            "/healthz to say the file was deleted",
            stack,
        )

        def history_since_deleted() -> int:
            url = f"{stack.web_url}/api/v1/history?from={deleted_ts:.3f}&points=10"
            with urllib.request.urlopen(url, timeout=5) as response:
                series = json.loads(response.read())["series"]
            return sum(sum(each["count"]) for each in series)

        wait_until(lambda: history_since_deleted() >= 6, 30, "the web to read the new file", stack)


def test_a_database_replaced_while_running_is_written_from_then_on(tmp_path):
    env = {"PCW_SIM_GPUS": "2", "PCW_INTERVAL_S": "0.5"}
    with Stack(tmp_path, env, supervised=False) as stack:
        stack.wait_ticks(3)
        stack.wait_web()
        copy = tmp_path / "restored.db"
        with (
            closing(sqlite3.connect(stack.db_path)) as source,
            closing(sqlite3.connect(copy)) as target,
        ):
            source.backup(target)  # what a user restores from: a consistent copy
            (restored,) = target.execute("SELECT count(*) FROM readings").fetchone()
        assert restored > 0
        os.replace(copy, stack.db_path)
        replaced_ts = time.time()

        def stored_since_replaced() -> int:
            rows = stack.query("SELECT count(*) FROM readings WHERE ts > ?", (replaced_ts,))
            return int(rows[0][0])

        wait_until(lambda: stored_since_replaced() >= 6, 30, "readings in the new file", stack)
        assert stack.query("PRAGMA integrity_check") == [("ok",)]
        (now_held,) = stack.query("SELECT count(*) FROM readings WHERE ts <= ?", (replaced_ts,))
        assert now_held[0] >= restored  # the restored readings are kept, written after
        wait_until(
            lambda: "was replaced by another file" in _problems(stack),
            30,
            "/healthz to say the file was replaced",
            stack,
        )
