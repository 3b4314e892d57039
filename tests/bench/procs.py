"""Child processes of the benchmark: started on 127.0.0.1, always stopped terminate -> wait -> kill.

Also what the sections read of a running process in /proc: CPU seconds, RSS and PSS.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

from tests.stack import REPO, child_env, free_port, http_status

log = logging.getLogger(__name__)

STOP_TIMEOUT_S = 15.0
CLOCK_TICKS_PER_S = os.sysconf("SC_CLK_TCK")

__all__ = [
    "REPO",
    "bench_env",
    "cpu_seconds",
    "free_port",
    "http_status",
    "log_tail",
    "memory_bytes",
    "running",
    "stop",
    "wait_until",
]


def bench_env(overrides: Mapping[str, str] | None = None) -> dict[str, str]:
    """Return an environment for a child: no PCW_* from outside, this Python first on PATH."""
    env = child_env()
    env.update(
        PCW_LOG_LEVEL="WARNING",
        PCW_HOST_NAME="benchhost",
        # never a purge + VACUUM in the middle of a measurement
        PCW_MAINTENANCE_S=str(7 * 86400),
    )
    env.update(overrides or {})
    return env


def stop(process: subprocess.Popen[bytes], timeout_s: float = STOP_TIMEOUT_S) -> int:
    """Stop a child: SIGTERM, wait, then SIGKILL; return its exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            return process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


@contextlib.contextmanager
def running(
    command: list[str],
    env: Mapping[str, str],
    log_path: Path,
    *,
    stdin: int | None = subprocess.DEVNULL,
    stdout: int | None = None,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a child in the repository for the block's duration; stop it however the block ends.

    Its stderr (and its stdout unless `stdout` is given) goes to log_path.
    """
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            command,
            cwd=REPO,
            env=dict(env),
            stdin=stdin,
            stdout=log_file if stdout is None else stdout,
            stderr=log_file,
        )
        try:
            yield process
        except Exception:
            log.error(
                "%s failed; the end of its log:\n%s", " ".join(command[1:4]), log_tail(log_path)
            )
            raise
        finally:
            stop(process)
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()


@contextlib.contextmanager
def serving_web(db_path: Path, log_path: Path, **settings: str) -> Iterator[str]:
    """Run a web process over db_path (no sampler to listen to) until the block ends; yield its
    URL once it answers."""
    port = free_port()
    env = bench_env(
        {
            "PCW_DB_PATH": str(db_path),
            "PCW_WEB_PORT": str(port),
            "PCW_SUBSCRIBE": f"tcp://127.0.0.1:{free_port()}",  # no sampler there
            **settings,
        }
    )
    url = f"http://127.0.0.1:{port}"
    with running([sys.executable, "-m", "services.web"], env, log_path) as web:
        wait_until(lambda: http_status(url + "/healthz") is not None, 30, "the web", web, log_path)
        yield url


def wait_until(
    condition: Callable[[], object],
    timeout_s: float,
    what: str,
    process: subprocess.Popen[bytes] | None = None,
    log_path: Path | None = None,
) -> None:
    """Poll condition() until it is true; raise with the child's log tail after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"exited with {process.returncode} before {what}{_tail(log_path)}")
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}{_tail(log_path)}")


def _tail(log_path: Path | None) -> str:
    return "\n" + log_tail(log_path) if log_path is not None and log_path.exists() else ""


def log_tail(log_path: Path, chars: int = 2000) -> str:
    """Return the end of a child's log ("" when there is none)."""
    try:
        return log_path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def cpu_seconds(pid: int) -> float:
    """Return the user + system CPU seconds a process has used (utime + stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS_PER_S


def memory_bytes(pid: int) -> tuple[int, int]:
    """Return (RSS, PSS) of a process in bytes, from /proc/PID/status and smaps_rollup."""
    return _kib_field(f"/proc/{pid}/status", "VmRSS:"), _kib_field(
        f"/proc/{pid}/smaps_rollup", "Pss:"
    )


def _kib_field(path: str, name: str) -> int:
    for line in Path(path).read_text().splitlines():
        if line.startswith(name):
            return int(line.split()[1]) * 1024
    raise LookupError(f"no {name} in {path}")
