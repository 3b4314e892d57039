"""Take the README's screenshot: the simulated demo's dashboard, 4 GPUs (one idle, one in MIG).

    python -m tests.browser.screenshot [--out docs/screenshot.png]

An hour of history is written first, through the sampler's reader over the simulated GPUs with a
clock stepped through the past and the writer's own storage code, so that the charts, the "who
used the GPUs" table and the energy figures have something to show; then the real stack runs on
that file and a headless Chromium (Debian's, as in the browser tests) takes a 1400x1000 picture.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import sync_playwright

from services.alerts.evaluator import Evaluator
from services.sampler.nvml import GpuReader
from services.sampler.procfs import ProcResolver
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.simulated_procfs import FakeProcTree
from services.sampler.ticks import build_tick
from services.writer.store import Store
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.stack import REPO, Stack

HOST = "gpu-node-1"
GPU_COUNT = 4
MIG_INDEX = 3  # an A100 in MIG mode
IDLE_INDEX = 1  # held idle by a forgotten notebook for the whole hour
IDLE_AFTER_S = 600  # flagged after 10 minutes, so the picture shows the flag
HISTORY_S = 3600
HISTORY_INTERVAL_S = 10.0
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_OUT = REPO / "docs" / "screenshot.png"


class SteppedClock:
    """A wall clock moved by hand through the past."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def write_history(
    db_path: Path,
    proc_folder: Path,
    simulated: Callable[[SteppedClock, FakeProcTree], SimulatedNvml],
    history_s: float = HISTORY_S,
    interval_s: float = HISTORY_INTERVAL_S,
    host: str = HOST,
    alerts: Evaluator | None = None,
) -> int:
    """Store history_s seconds of ticks ending now of the GPUs simulated(clock, proc tree) gives,
    read by the sampler's reader on a clock stepped through the past; return the ticks written.

    With alerts, the ticks are judged by the writer's alert rules and what they fired and
    resolved is stored with them, as the writer does."""
    clock = SteppedClock()
    tree = FakeProcTree(proc_folder)
    reader = GpuReader(
        simulated(clock, tree), resolver=ProcResolver(tree.proc_root), wall=clock, monotonic=clock
    )
    reader.start()
    last_s = (time.time() // interval_s) * interval_s - interval_s
    count = int(history_s / interval_s)
    ticks = []
    for seq in range(count):
        clock.now_s = last_s - (count - 1 - seq) * interval_s
        ticks.append(build_tick(reader.read(), host, "history", seq, clock.now_s, interval_s))
    db_path.parent.mkdir(parents=True, exist_ok=True)
    store = Store(db_path)
    try:
        if alerts is None:
            store.write(ticks)
        else:
            positions = {"history": (host, count - 1)}
            alerts.load([], {}, {})
            store.write(ticks, positions, alerts.evaluate(ticks, positions))
            alerts.committed()
    finally:
        store.close()
    return len(ticks)


def dashboard_gpus(clock: SteppedClock, tree: FakeProcTree) -> SimulatedNvml:
    """Return the dashboard picture's simulated GPUs, the same as the stack's settings give."""
    return SimulatedNvml(
        GPU_COUNT,
        host=HOST,
        mig_gpus=(MIG_INDEX,),
        idle_gpus=(IDLE_INDEX,),
        clock=clock,
        proc_tree=tree,
    )


def take(out: Path) -> None:
    """Run the demo stack on an hour of history and save the dashboard's picture to out."""
    with tempfile.TemporaryDirectory(prefix="pcw-screenshot-") as folder:
        env = {
            "PCW_HOST_NAME": HOST,
            "PCW_SIM_GPUS": str(GPU_COUNT),
            "PCW_SIM_MIG_GPUS": str(MIG_INDEX),
            "PCW_SIM_IDLE_GPUS": str(IDLE_INDEX),
            "PCW_IDLE_AFTER_S": str(IDLE_AFTER_S),
            "PCW_INTERVAL_S": "2",
            "PCW_ENERGY_PRICE_PER_KWH": "0.30",
            "PCW_CURRENCY": "EUR",
        }
        with Stack(Path(folder), env, supervised=False, programs=()) as stack:
            write_history(stack.db_path, Path(folder) / "history-proc", dashboard_gpus)
            for name in ("writer", "sampler", "web"):
                stack.start(name)
            stack.wait_web()
            stack.wait_ticks(int(HISTORY_S / HISTORY_INTERVAL_S) + 3)
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{stack.web_url}/")
                page.wait_for_selector("#conn-badge[data-state='live']")
                page.wait_for_selector(".gpu-card .process-table tbody tr")
                page.wait_for_selector("#usage-table tbody tr")
                page.wait_for_selector("#energy-gpus tbody tr")
                page.wait_for_selector(".gpu-card[data-idle='true'] .idle-badge")
                page.wait_for_function(
                    "() => Chart.getChart('chart-mem').data.datasets.every("
                    "(d) => d.data.filter((p) => p.y !== null).length > 100)"
                )
                page.wait_for_timeout(3000)  # a few live ticks
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out))
                browser.close()


def main(
    argv: list[str] | None = None,
    take: Callable[[Path], None] = take,
    default_out: Path = DEFAULT_OUT,
    doc: str = __doc__,
) -> int:
    """Parse the arguments and take the screenshot (this one, or another script's)."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    parser.add_argument("--out", type=Path, default=default_out)
    args = parser.parse_args(argv)
    take(args.out)
    sys.stdout.write(f"saved {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
