"""Start the real pyCudaWatch processes for a test, on temporary paths and free ports.

Supervised (the default): `supervisord -c supervisord.conf`, exactly as a user runs it.
Unsupervised: each process as `python -m services.<name>`, so a test can stop and start one.
Always torn down terminate -> wait -> kill.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType

import zmq

from common.messages import TOPIC, Tick

REPO = Path(__file__).resolve().parent.parent
PROGRAMS = ("writer", "sampler", "web")  # start order; stopped in reverse
STOP_TIMEOUT_S = 40.0


def ephemeral_ports() -> range:
    """Return the ports the kernel gives a connect() that names none (ip_local_port_range)."""
    try:
        low, high = map(int, Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # Linux's default
    return range(low, high + 1)


def free_port(consecutive: int = 1) -> int:
    """Return a TCP port on 127.0.0.1 that, with the next consecutive - 1, was free just now.

    A sampler takes two: its PUB port and the next one for replays. The ports lie outside the
    kernel's ephemeral range (never port 0's pick): a socket that retries connecting to such a
    port while nobody listens (a replay port no test binds, a sampler stopped) is given it as
    its own source port one day and connects to itself, then talks to itself, and holds the
    port, for good.
    """
    ephemeral = ephemeral_ports()
    spans = [(10_000, ephemeral.start), (ephemeral.stop, 65_536)]
    firsts = [port for lo, hi in spans for port in range(lo, hi - consecutive + 1)]
    for _ in range(200):
        first = random.choice(firsts)
        probes = [socket.socket() for _ in range(consecutive)]
        try:
            for offset, probe in enumerate(probes):
                probe.bind(("127.0.0.1", first + offset))
            return first
        except OSError:
            continue
        finally:
            for probe in probes:
                probe.close()
    raise RuntimeError(f"no {consecutive} consecutive free ports found")


def _web_port(env: dict[str, str]) -> int:
    """Return a free port that is not the sampler's PUB or replay port."""
    pub_port = int(env["PCW_PUB_ENDPOINT"].rpartition(":")[2])
    while (port := free_port()) in (pub_port, pub_port + 1):
        pass
    return port


def child_env() -> dict[str, str]:
    """Return a base environment for a child: no PCW_* from outside, this Python first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCW_")}
    env.update(
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        PYTHONUNBUFFERED="1",
        PCW_WEB_HOST="127.0.0.1",
    )
    return env


def stack_env(tmp_path: Path, overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Return an environment for one stack: simulated GPUs, its own DB, endpoint and port."""
    env = child_env()
    env.update(
        PCW_SOURCE="simulated",
        PCW_INTERVAL_S="1",
        PCW_DB_PATH=str(tmp_path / "db" / "gpu_stats.db"),
        PCW_PUB_ENDPOINT=f"tcp://127.0.0.1:{free_port(consecutive=2)}",
    )
    env.update(
        PCW_WEB_PORT=str(_web_port(env)),
        PCW_HOST_NAME="testhost",
    )
    env.update(overrides or {})
    return env


class Stack:
    """The three processes of one stack, with helpers to wait on and inspect them."""

    def __init__(
        self,
        tmp_path: Path,
        env: dict[str, str] | None = None,
        supervised: bool = True,
        programs: tuple[str, ...] = PROGRAMS,
    ) -> None:
        self.tmp_path = tmp_path
        self.env = stack_env(tmp_path, env)
        self.supervised = supervised
        self.programs = programs
        self.db_path = Path(self.env["PCW_DB_PATH"])
        self.web_url = f"http://127.0.0.1:{self.env['PCW_WEB_PORT']}"
        self.log_path = tmp_path / "stack.log"
        self._log = self.log_path.open("ab")
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def __enter__(self) -> Stack:
        if self.supervised:
            command = [
                sys.executable,
                "-m",
                "supervisor.supervisord",
                "-c",
                str(REPO / "supervisord.conf"),
                "-j",
                str(self.tmp_path / "sd.pid"),
            ]
            self.processes["supervisord"] = self._spawn(command)
        else:
            for name in self.programs:
                self.start(name)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()
        self._log.close()

    def _spawn(self, command: list[str]) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            command,
            cwd=REPO,
            env=self.env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def start(self, name: str) -> None:
        """Start one process (unsupervised stacks only)."""
        assert not self.supervised, "supervisord owns the processes of a supervised stack"
        self.processes[name] = self._spawn([sys.executable, "-m", f"services.{name}"])

    def stop(self, name: str, sig: int = signal.SIGTERM) -> int:
        """Send sig to one process and wait for it; return its exit status."""
        process = self.processes.pop(name)
        process.send_signal(sig)
        try:
            return process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            return process.wait()

    def pid_of(self, name: str) -> int:
        """Return the pid of a program that supervisord runs (supervised stacks only)."""
        parent = self.processes["supervisord"].pid
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue
            if int(fields[1]) == parent and f"services.{name}".encode() in cmdline:
                return int(stat.parent.name)
        raise LookupError(f"supervisord runs no {name} now")

    def terminate(self) -> dict[str, int]:
        """Stop everything still running (SIGTERM, then kill); return exit statuses by name."""
        statuses = {}
        for name in sorted(self.processes, key=_stop_order):
            statuses[name] = self.stop(name)
        return statuses

    def logs(self) -> str:
        """Return everything the processes printed so far."""
        self._log.flush()
        return self.log_path.read_text(errors="replace")

    def query(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple]:
        """Run a read-only query on the stack's database."""
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            return conn.execute(sql, params).fetchall()
        finally:
            conn.close()

    def stored_ticks(self) -> int:
        """Return how many distinct tick times are stored (0 before the file exists)."""
        if not self.db_path.exists():
            return 0
        try:
            return int(self.query("SELECT count(DISTINCT ts) FROM readings")[0][0])
        except sqlite3.OperationalError:  # not created yet
            return 0

    def wait_ticks(self, count: int, timeout_s: float = 30.0) -> None:
        """Wait until at least `count` ticks are stored."""
        wait_until(lambda: self.stored_ticks() >= count, timeout_s, f"{count} stored ticks", self)

    def wait_web(self, timeout_s: float = 30.0) -> None:
        """Wait until the web process answers /healthz (any status)."""
        wait_until(
            lambda: http_status(self.web_url + "/healthz") is not None,
            timeout_s,
            "the web process",
            self,
        )


@contextmanager
def running_stack(folder: Path, env: dict[str, str], ticks: int) -> Iterator[Stack]:
    """Run an unsupervised stack in folder; yield it once its web answers and it stored ticks."""
    with Stack(folder, env, supervised=False) as stack:
        stack.wait_web()
        stack.wait_ticks(ticks)
        yield stack


def run_service(
    name: str, env: dict[str, str], timeout_s: float, cwd: Path = REPO
) -> subprocess.CompletedProcess[str]:
    """Run `python -m services.<name>` to its end (one that should refuse to start); capture it."""
    return subprocess.run(
        [sys.executable, "-m", f"services.{name}"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )


def _stop_order(name: str) -> int:
    return -PROGRAMS.index(name) if name in PROGRAMS else 0


def http_status(url: str) -> int | None:
    """Return the HTTP status of GET url, or None when nothing answers."""
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)
    except (urllib.error.URLError, OSError):
        return None


def accepts_connections(endpoint: str) -> bool:
    """Return whether anything accepts TCP connections on a tcp:// endpoint."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=2).close()
    except OSError:
        return False
    return True


def nvml_library_loads() -> bool:
    """Return whether NVML's library loads here: a GPU host, where a sampler reads real GPUs."""
    try:
        ctypes.CDLL("libnvidia-ml.so.1")
    except OSError:
        return False
    return True


def process_age_s(pid: int) -> float:
    """Return how long the process pid has been running, in seconds (from /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    started_s = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: start, ticks since boot
    uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    return uptime_s - started_s


def slot_of(ts: float, interval_s: float) -> int:
    """Return the schedule slot a reading's ts falls in: aligned ticks are at its start, and a
    tick read when the sampler starts stands for the slot it was read in."""
    return math.floor(ts / interval_s + 1e-6)


def missing_and_duplicated(stack: Stack, interval_s: float) -> tuple[int, int, int]:
    """Return (slots expected per GPU, readings missing, readings duplicated) in the file.

    A slot is missing for a GPU when no reading of it falls in that slot; a reading is
    duplicated when the GPU has another at the same ts. The slot after a tick read at a
    sampler's start (off the schedule) may be skipped, as any slot after a late tick is: the
    start's read can take longer than the time left to it, and is not counted missing.
    """
    rows = stack.query("SELECT gpu_uuid, ts FROM readings")
    slots: dict[str, set[int]] = {}
    stamps: dict[str, set[float]] = {}
    for uuid, ts in rows:
        slots.setdefault(uuid, set()).add(slot_of(ts, interval_s))
        stamps.setdefault(uuid, set()).add(ts)
    every = set().union(*slots.values())
    first, last = min(every), max(every)
    expected = last - first + 1
    missing = 0
    for uuid, gpu_slots in slots.items():
        started = {
            slot_of(ts, interval_s) + 1 for ts in stamps[uuid] if _off_schedule(ts, interval_s)
        }
        absent = set(range(first, last + 1)) - gpu_slots
        missing += len(absent - started)
    duplicated = len(rows) - sum(len(ts_set) for ts_set in stamps.values())
    return expected, missing, duplicated


def _off_schedule(ts: float, interval_s: float) -> bool:
    """Return whether ts is not on a multiple of interval_s (a tick read at a sampler's start)."""
    return abs(ts / interval_s - round(ts / interval_s)) > 1e-6


def wait_until(condition: object, timeout_s: float, what: str, stack: Stack | None = None) -> None:
    """Poll condition() until it is true; fail with the stack's logs after timeout_s."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.1)
    logs = stack.logs()[-4000:] if stack else ""
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}\n{logs}")


def healthz(stack: Stack) -> tuple[int, dict]:
    """Return the status code and JSON body of the stack's /healthz (503 has a body too)."""
    try:
        with urllib.request.urlopen(stack.web_url + "/healthz", timeout=5) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def listen_ticks(endpoint: str, seen: list[Tick], stop: threading.Event) -> None:
    """Record every tick published at endpoint, as an independent subscriber, until stop."""
    with zmq.Context() as context, context.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
        sub.connect(endpoint)
        while not stop.is_set():
            if sub.poll(100):
                seen.append(Tick.from_frames(sub.recv_multipart()))
