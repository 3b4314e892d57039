"""Cost per tick: the sampler's CPU per tick against a new process per tick (the cron design).

The sampler runs as users run it, on 8 simulated GPUs every 0.1 s; the bench subscribes, and
reads utime + stime from /proc/PID/stat when a tick arrives, at the start and the end of a
window: CPU seconds over ticks published in between (by `seq`). The baseline is what the
original collector did each tick: a new `python -c` that imports the reader and sqlite3, reads
the simulated GPUs once and inserts 8 rows; its CPU comes from getrusage(RUSAGE_CHILDREN).
"""

from __future__ import annotations

import logging
import resource
import subprocess
import sys
import time
from pathlib import Path

import zmq

from common.messages import TOPIC, Tick
from tests.bench.procs import REPO, bench_env, cpu_seconds, free_port, running
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, ms, times

log = logging.getLogger(__name__)

INTERVAL_S = 0.1
GPUS = 8
MIN_RATIO = 50.0

CRON_SCRIPT = """
import sqlite3, sys
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
reader = GpuReader(SimulatedNvml(8))
reader.start()
reading = reader.read()
conn = sqlite3.connect(sys.argv[1])
conn.execute(
    "CREATE TABLE IF NOT EXISTS readings (ts REAL, gpu_uuid TEXT, util_gpu_pct INTEGER,"
    " util_mem_pct INTEGER, mem_used_bytes INTEGER, temp_c INTEGER, power_w REAL)"
)
conn.executemany(
    "INSERT INTO readings VALUES (strftime('%s', 'now'), ?, ?, ?, ?, ?, ?)",
    [(g.uuid, g.util_gpu_pct, g.util_mem_pct, g.mem_used_bytes, g.temp_c, g.power_w)
     for g in reading.gpus],
)
conn.commit()
conn.close()
"""


def run(sizes: Sizes, work: Path, report: Report) -> None:
    """Measure the sampler and the process-per-tick baseline."""
    sampler_s, ticks = sampler_cpu(sizes.sampler_warmup_s, sizes.sampler_run_s, work)
    cron_cpu_s, cron_wall_s = cron_cost(sizes.cron_runs, work)
    ratio = cron_cpu_s / sampler_s
    report.add(
        Row(
            "sampler CPU per tick, 8 simulated GPUs",
            ms(sampler_s),
            f"{ms(cron_cpu_s)} process per tick",
            times(ratio),
            f">= {MIN_RATIO:g}x less",
            ratio >= MIN_RATIO,
        )
    )
    report.note(
        f"cost: the sampler published {ticks} ticks {INTERVAL_S:g} s apart in the window; "
        f"{sizes.cron_runs} runs of the process per tick took {ms(cron_wall_s)} wall time each"
    )


def sampler_cpu(warmup_s: float, window_s: float, work: Path) -> tuple[float, int]:
    """Return (CPU seconds per tick, ticks in the window) of a real sampler process."""
    endpoint = f"tcp://127.0.0.1:{free_port(consecutive=2)}"
    env = bench_env(
        {
            "PCW_SOURCE": "simulated",
            "PCW_SIM_GPUS": str(GPUS),
            "PCW_INTERVAL_S": str(INTERVAL_S),
            "PCW_PUB_ENDPOINT": endpoint,
        }
    )
    log_path = work / "sampler-cost.log"
    with (
        zmq.Context() as context,
        context.socket(zmq.SUB) as socket,
        running([sys.executable, "-m", "services.sampler"], env, log_path) as sampler,
    ):
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
        socket.connect(endpoint)
        _next_seq(socket, 30)  # started
        time.sleep(warmup_s)
        first_seq = _next_seq(socket, 5, drain=True)
        first_cpu = cpu_seconds(sampler.pid)
        time.sleep(window_s)
        last_seq = _next_seq(socket, 5, drain=True)
        last_cpu = cpu_seconds(sampler.pid)
    ticks = last_seq - first_seq
    if ticks <= 0:
        raise RuntimeError("the sampler published no tick in the window")
    return (last_cpu - first_cpu) / ticks, ticks


def _next_seq(socket: zmq.Socket, timeout_s: float, drain: bool = False) -> int:
    """Return the seq of the next tick to arrive (after those already queued, when drain)."""
    if drain:
        while socket.poll(0):
            socket.recv_multipart()
    if not socket.poll(int(timeout_s * 1000)):
        raise TimeoutError(f"no tick from the sampler in {timeout_s:g} s")
    return Tick.from_frames(socket.recv_multipart()).seq


def cron_cost(runs: int, work: Path) -> tuple[float, float]:
    """Return (CPU seconds, wall seconds) per run of the process-per-tick collector."""
    db_path = work / "cron.db"
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(
            [sys.executable, "-c", CRON_SCRIPT, str(db_path)],
            cwd=REPO,
            env=bench_env(),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=60,
        )
    wall_s = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu_s = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return cpu_s / runs, wall_s / runs
