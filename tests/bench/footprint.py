"""Footprint: resident memory of the real stack, and bytes on disk per stored reading.

Memory: the stack runs under supervisord exactly as users run it (tests.stack.Stack), on 8
simulated GPUs; after its warm-up (ticks stored, every page and API route asked for once, a
websocket fed) the RSS and PSS of supervisord and its three programs are read from /proc. The
baseline is the import floor of each, measured in the same run: a python3 process that imports
what that program imports from outside the project, and waits.

Disk: the generated files' size (with WAL, after a checkpoint) per stored reading, against the
pages of the raw `samples` table alone (SQLite's dbstat).

Replay buffer: a sampler's replay buffer filled with 64-GPU ticks, ticks held and RSS with ticks
packed against kept as published, on the same ticks (tests/bench/replay_memory.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp

from tests.bench import replay_memory
from tests.bench.databases import Generated, bytes_per_reading
from tests.bench.procs import bench_env, memory_bytes
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, mb, times
from tests.stack import Stack

log = logging.getLogger(__name__)

STACK_LIMIT_BYTES = 150e6
READING_LIMIT_BYTES = 100.0
PROGRAMS = ("supervisord", "sampler", "writer", "web")
# What each program imports from outside the project (and the standard library it leans on);
# the sampler and the writer with CPython's built-in hashes, as they run (services.builtin_hashes).
_BUILTIN_HASHES = "from services.builtin_hashes import use_builtin_hashes; use_builtin_hashes()\n"
FLOOR_IMPORTS = {
    "bare python3": "",
    "supervisord": "import supervisor.supervisord",
    "sampler": _BUILTIN_HASHES + "import zmq, msgspec, logging, uuid, hashlib",
    "writer": _BUILTIN_HASHES + "import zmq, msgspec, sqlite3, logging, hashlib",
    "web": "import aiohttp.web, aiohttp_jinja2, jinja2, zmq.asyncio, msgspec, sqlite3, logging",
}
READY_TIMEOUT_S = 30.0
_WAIT = "import sys\nsys.stdout.write('ready\\n')\nsys.stdout.flush()\nsys.stdin.read()"

Memory = dict[str, tuple[int, int]]  # (RSS, PSS) in bytes by process


def run(sizes: Sizes, files: list[Generated], work: Path, report: Report) -> None:
    """Measure the stack's memory against the floors, the files' bytes per reading, then the
    replay buffer's memory under both bounds."""
    with floors() as floor_memory:
        stack, floor = stack_memory(sizes, work, floor_memory)
    for program in PROGRAMS:
        rss, pss = stack[program]
        floor_rss, floor_pss = floor[program]
        report.add(
            Row(
                f"RSS of {program}",
                f"{mb(rss)} (PSS {mb(pss)})",
                f"{mb(floor_rss)} (PSS {mb(floor_pss)}) import floor",
                times(rss / floor_rss),
            )
        )
    total_rss = sum(stack[p][0] for p in PROGRAMS)
    total_pss = sum(stack[p][1] for p in PROGRAMS)
    floor_rss = sum(floor[p][0] for p in PROGRAMS)
    floor_pss = sum(floor[p][1] for p in PROGRAMS)
    report.add(
        Row(
            "RSS of the whole stack (supervisord + 3)",
            f"{mb(total_rss)} (PSS {mb(total_pss)})",
            f"{mb(floor_rss)} (PSS {mb(floor_pss)}) import floors",
            times(total_rss / floor_rss),
            f"< {mb(STACK_LIMIT_BYTES)}",
            total_rss < STACK_LIMIT_BYTES,
        )
    )
    bare_rss, bare_pss = floor["bare python3"]
    report.note(f"footprint: bare python3 measured at {mb(bare_rss)} RSS ({mb(bare_pss)} PSS)")
    for item in files:
        whole, raw = bytes_per_reading(item)
        report.add(
            Row(
                f"disk per stored reading, {item.spec.name}",
                f"{whole:.1f} B (rollups included)",
                f"{raw:.1f} B raw samples alone",
                times(whole / raw),
                f"< {READING_LIMIT_BYTES:g} B",
                whole < READING_LIMIT_BYTES,
            )
        )
    replay_memory.run(sizes.replay_gpus, sizes.replay_ticks, sizes.replay_bytes, work, report)


def stack_memory(
    sizes: Sizes, work: Path, floor_memory: Callable[[], Memory]
) -> tuple[Memory, Memory]:
    """Run the supervised stack and warm it up; return (RSS, PSS) of its processes and floors.

    Both are read at the same moment, while every one of them runs.
    """
    log.info("footprint: the supervised stack")
    folder = work / "stack"
    folder.mkdir(exist_ok=True)
    env = {
        "PCW_SIM_GPUS": "8",
        "PCW_INTERVAL_S": "1",
        "PCW_LOG_LEVEL": "WARNING",
        "PCW_MAINTENANCE_S": str(7 * 86400),
    }
    with Stack(folder, env) as stack:
        stack.wait_ticks(3, timeout_s=60)
        stack.wait_web(timeout_s=60)
        asyncio.run(_exercise(stack.web_url))
        time.sleep(sizes.footprint_warmup_s)
        pids = {"supervisord": stack.processes["supervisord"].pid}
        pids.update({name: stack.pid_of(name) for name in PROGRAMS[1:]})
        return {name: memory_bytes(pid) for name, pid in pids.items()}, floor_memory()


async def _exercise(url: str) -> None:
    """Ask for what a dashboard asks for: the page, its data, and a websocket's first ticks."""
    now = time.time()
    async with aiohttp.ClientSession() as session:
        for path in (
            "/",
            "/api/v1/gpus",
            f"/api/v1/history?from={now - 3600:.0f}&to={now:.0f}",
            "/healthz",
        ):
            async with session.get(url + path) as response:
                await response.read()
        async with session.ws_connect(url + "/ws") as ws:
            for _ in range(3):
                await ws.receive(timeout=10)


@contextlib.contextmanager
def floors() -> Iterator[Callable[[], Memory]]:
    """Start every floor process at once; yield what reads their (RSS, PSS) while they run."""
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for name, imports in FLOOR_IMPORTS.items():
            script = f"{imports}\n{_WAIT}"
            processes[name] = subprocess.Popen(
                [sys.executable, "-c", script],
                env=bench_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
        for name, process in processes.items():
            assert process.stdout is not None
            readable, _, _ = select.select([process.stdout], [], [], READY_TIMEOUT_S)
            if not readable or process.stdout.readline().strip() != b"ready":
                raise RuntimeError(f"the {name} floor process did not start")
        yield lambda: {name: memory_bytes(process.pid) for name, process in processes.items()}
    finally:
        for process in processes.values():
            for stream in (process.stdin, process.stdout):
                if stream is not None:
                    stream.close()
            try:
                process.wait(5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
