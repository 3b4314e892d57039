"""Take the README's picture of a GPU's page: a simulated H100 that runs hot and hit an XID.

    python -m tests.browser.gpu_page_screenshot [--out docs/img/gpu-page.png]

Made as tests/browser/screenshot.py makes the dashboard's: six hours of history are written
first, through the sampler's reader over the simulated GPUs with a clock stepped through the past
and the writer's own storage code, so that the charts, the events and the processes of the
default range have something to show; then the real stack runs on that file, and a headless
Chromium (Debian's, as in the browser tests) opens the dashboard, follows the H100's card to its
page and takes a full-page picture 1400 pixels wide.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.simulated_procfs import FakeProcTree
from tests.browser.screenshot import SteppedClock, write_history
from tests.browser.screenshot import main as screenshot_main
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.stack import REPO, Stack

HOST = "gpu-node-1"
GPU_COUNT = 4
SHOWN_INDEX = 1  # the H100: it has GPM, so the activity metrics are drawn
HOT_INDEX = 1  # past its slowdown temperature under load: throttled
XID_INDEX = 1
HISTORY_S = 6 * 3600  # the page's default range
# Finer than the 60 s rollup, which the writer then keeps and the 6 h charts are read from.
HISTORY_INTERVAL_S = 30.0
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_OUT = REPO / "docs" / "img" / "gpu-page.png"


def simulated(clock: SteppedClock, tree: FakeProcTree) -> SimulatedNvml:
    """Return the simulated GPUs of the picture, the same as the stack's own settings give."""
    return SimulatedNvml(
        GPU_COUNT,
        host=HOST,
        hot_gpus=(HOT_INDEX,),
        xid_gpus=(XID_INDEX,),
        clock=clock,
        proc_tree=tree,
    )


def take(out: Path) -> None:
    """Run the demo stack on six hours of history and save the H100's page's picture to out."""
    with tempfile.TemporaryDirectory(prefix="pcw-screenshot-") as folder:
        env = {
            "PCW_HOST_NAME": HOST,
            "PCW_SIM_GPUS": str(GPU_COUNT),
            "PCW_SIM_HOT_GPUS": str(HOT_INDEX),
            "PCW_SIM_XID_GPUS": str(XID_INDEX),
            "PCW_INTERVAL_S": "2",
        }
        with Stack(Path(folder), env, supervised=False, programs=()) as stack:
            write_history(
                stack.db_path, Path(folder) / "history-proc", simulated, HISTORY_S,
                HISTORY_INTERVAL_S,
            )  # fmt: skip
            for name in ("writer", "sampler", "web"):
                stack.start(name)
            stack.wait_web()
            stack.wait_ticks(int(HISTORY_S / HISTORY_INTERVAL_S) + 3)
            uuid_shown = SimulatedNvml(GPU_COUNT, host=HOST).devices[SHOWN_INDEX].uuid
            with sync_playwright() as driver:
                browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                page = browser.new_page(viewport=VIEWPORT)
                page.goto(f"{stack.web_url}/")
                page.locator(f".gpu-card[data-gpu-uuid='{uuid_shown}'] .gpu-name").click()
                page.wait_for_url(f"**/gpu/{uuid_shown}")
                page.wait_for_selector("#gpu-header .gpu-finding")
                page.wait_for_selector("#usage-table tbody tr")
                page.wait_for_selector("#events-list:not([hidden]) .gpu-event")
                page.wait_for_function(
                    "() => ['util', 'mem', 'temp', 'power'].every((id) =>"
                    " Chart.getChart(`gpu-chart-${id}`).data.datasets.some("
                    "(d) => d.data.filter((p) => p.y !== null).length > 100))"
                )
                page.wait_for_timeout(1000)
                out.parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(out), full_page=True)
                browser.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and take the screenshot."""
    return screenshot_main(argv, take, DEFAULT_OUT, __doc__)


if __name__ == "__main__":
    sys.exit(main())
