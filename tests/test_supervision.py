"""supervisord as users run it: a bad setting stops it, output to a file, no venv activated."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.stack import REPO, http_status, nvml_library_loads, stack_env, wait_until

STOP_TIMEOUT_S = 60.0


@contextmanager
def supervisord(
    tmp_path: Path, env: dict[str, str], command: list[str] | None = None, mode: str = "wb"
) -> Iterator[tuple[subprocess.Popen[bytes], Path]]:
    """Run `supervisord -c supervisord.conf` from tmp_path, its output to a file opened in mode.

    Yield the process and the output file's path; stop it (SIGTERM, then kill) at the end.
    """
    output = tmp_path / "supervisord.out"
    command = command or [sys.executable, "-m", "supervisor.supervisord"]
    with output.open(mode) as stdout:
        process = subprocess.Popen(
            [*command, "-c", str(REPO / "supervisord.conf"), "-j", str(tmp_path / "sd.pid")],
            cwd=tmp_path,
            env=env,
            stdout=stdout,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield process, output
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def spawns(output: Path) -> dict[str, int]:
    """Return how many times supervisord started each program, from its output."""
    text = output.read_text(errors="replace")
    return {
        name: len(re.findall(rf"spawned: '{name}'", text)) for name in ("writer", "sampler", "web")
    }


def stored_ticks(env: dict[str, str]) -> int:
    """Return the distinct tick times stored in the stack's database (0 before it exists)."""
    path = Path(env["PCW_DB_PATH"])
    if not path.exists():
        return 0
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return int(conn.execute("SELECT count(DISTINCT ts) FROM readings").fetchone()[0])
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_a_bad_setting_stops_every_program_at_once_and_supervisord_with_status_2(tmp_path):
    env = stack_env(tmp_path, {"PCW_INTERVAL_S": "banana"})
    started = time.monotonic()
    with supervisord(tmp_path, env) as (process, output):
        status = process.wait(STOP_TIMEOUT_S)
    took_s = time.monotonic() - started
    text = output.read_text(errors="replace")
    assert status == 2, text
    assert took_s < 30, text  # not 11 starts with backoff (~57 s), then alive forever
    assert all(count == 1 for count in spawns(output).values()), text
    named = [line for line in text.splitlines() if "PCW_INTERVAL_S='banana' is not allowed" in line]
    assert named, text
    assert "stopping every program" in text
    assert not Path("/tmp/pycudawatch-supervisord.sock").exists()


@pytest.mark.skipif(nvml_library_loads(), reason="NVML is here: the sampler would not crash")
def test_any_other_exit_is_restarted_and_the_rest_keeps_running(tmp_path):
    # Without a driver, PCW_SOURCE=nvml makes the sampler exit 1: a crash, not a bad setting.
    env = stack_env(tmp_path, {"PCW_SOURCE": "nvml"})
    with supervisord(tmp_path, env) as (process, output):
        wait_until(lambda: spawns(output)["sampler"] >= 3, STOP_TIMEOUT_S, "three sampler starts")
        assert process.poll() is None
        assert http_status(f"http://127.0.0.1:{env['PCW_WEB_PORT']}/healthz") is not None
        assert spawns(output)["writer"] == spawns(output)["web"] == 1


def test_output_redirected_to_a_file_keeps_every_line(tmp_path):
    # `supervisord -c supervisord.conf > file`: opened without O_APPEND, as a shell's `>` does.
    env = stack_env(tmp_path)
    with supervisord(tmp_path, env, mode="wb") as (process, output):
        wait_until(lambda: stored_ticks(env) >= 3, STOP_TIMEOUT_S, "three stored ticks")
        wait_until(
            lambda: http_status(f"http://127.0.0.1:{env['PCW_WEB_PORT']}/healthz") is not None,
            STOP_TIMEOUT_S,
            "the web process",
        )
        process.send_signal(signal.SIGTERM)
        assert process.wait(STOP_TIMEOUT_S) == 0
    data = output.read_bytes()
    assert b"\0" not in data
    lines = data.decode().splitlines()
    # Every line is whole: a time stamp, then supervisord's or a program's text.
    assert all(re.match(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} ", line) for line in lines), lines
    text = "\n".join(lines)
    for expected in (
        "supervisord started with pid",
        "spawned: 'writer'",
        "spawned: 'web'",
        "writer subscribed to",
        "stopped: writer",
    ):
        assert expected in text, text


def test_the_venv_supervisord_runs_without_the_venv_activated(tmp_path):
    # PATH holds no `python` at all: the programs must run on supervisord's own interpreter.
    env = stack_env(tmp_path)
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    env["PATH"] = str(empty)
    env.pop("VIRTUAL_ENV", None)
    venv_supervisord = Path(sys.executable).parent / "supervisord"
    with supervisord(tmp_path, env, command=[str(venv_supervisord)]) as (_, output):
        wait_until(lambda: stored_ticks(env) >= 2, STOP_TIMEOUT_S, "two stored ticks")
        assert "can't find command" not in output.read_text(errors="replace")
