"""Take the README's picture of the alerts: the banner of what fires, a card's badge, the history.

    python -m tests.browser.alerts_screenshot [--out docs/img/alerts.png]

Made as tests/browser/screenshot.py makes the dashboard's: two hours of history are written
first, through the sampler's reader over the simulated GPUs with a clock stepped through the past
and the writer's own storage code, judged by the writer's alert rules on the way, so that the
alerts' history has transitions to show; then the real stack runs on that file, its
notifications sent to a webhook receiver on 127.0.0.1, and a headless Chromium (Debian's, as in
the browser tests) silences one alert from the banner and takes a picture 1400 pixels wide, from
the top of the page to the end of the alerts section.

GPU 0 (a GeForce) runs hot under load and GPU 1 (an H100) reported an XID and has rows pending
remap. The simulated load follows the wall clock, so the host is named for a GPU 0 that trains
(and runs hot) now: see tests/browser/test_alerts.py's host_running_hot.
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import sync_playwright

from common.config import load_config
from services.alerts.evaluator import Evaluator
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.simulated_procfs import FakeProcTree
from tests.browser.screenshot import SteppedClock, write_history
from tests.browser.screenshot import main as screenshot_main
from tests.browser.test_alerts import host_running_hot
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.receivers import WebhookReceiver
from tests.stack import REPO, Stack

GPU_COUNT = 2
HOT_INDEX = 0
XID_INDEX = 1
REMAP_INDEX = 1
SILENCED_RULE = "throttling"  # silenced from the banner for the picture
HISTORY_S = 2 * 3600
HISTORY_INTERVAL_S = 10.0
FIRES_WITHIN_MS = 120_000
VIEWPORT = {"width": 1400, "height": 1000}
DEFAULT_OUT = REPO / "docs" / "img" / "alerts.png"


def simulated(host: str) -> Callable[[SteppedClock, FakeProcTree], SimulatedNvml]:
    """Return a function of (clock, proc tree) giving the picture's simulated GPUs on host."""

    def gpus(clock: SteppedClock, tree: FakeProcTree) -> SimulatedNvml:
        return SimulatedNvml(
            GPU_COUNT,
            host=host,
            hot_gpus=(HOT_INDEX,),
            xid_gpus=(XID_INDEX,),
            remap_gpus=(REMAP_INDEX,),
            clock=clock,
            proc_tree=tree,
        )

    return gpus


def take(out: Path) -> None:
    """Run the demo stack on two hours of judged history and save the alerts' picture to out."""
    host = host_running_hot("gpu-node", GPU_COUNT, HOT_INDEX)
    with (
        WebhookReceiver() as receiver,
        tempfile.TemporaryDirectory(prefix="pcw-screenshot-") as folder,
    ):
        env = {
            "PCW_HOST_NAME": host,
            "PCW_SIM_GPUS": str(GPU_COUNT),
            "PCW_SIM_HOT_GPUS": str(HOT_INDEX),
            "PCW_SIM_XID_GPUS": str(XID_INDEX),
            "PCW_SIM_REMAP_GPUS": str(REMAP_INDEX),
            "PCW_ALERT_TEMP_FOR_S": "4",
            "PCW_ALERT_THROTTLE_FOR_S": "4",
            "PCW_ALERT_KEEP_FIRING_S": "600",
            "PCW_ALERT_XID_HOLD_S": "900",
            "PCW_NOTIFY_URLS": receiver.url,
            "PCW_INTERVAL_S": "2",
        }
        with Stack(Path(folder), env, supervised=False, programs=()) as stack:
            alerts = Evaluator(load_config(stack.env), ())
            write_history(
                stack.db_path, Path(folder) / "history-proc", simulated(host), HISTORY_S,
                HISTORY_INTERVAL_S, host, alerts,
            )  # fmt: skip
            for name in ("writer", "sampler", "web"):
                stack.start(name)
            stack.wait_web()
            stack.wait_ticks(int(HISTORY_S / HISTORY_INTERVAL_S) + 3)
            shoot(stack, out)


def shoot(stack: Stack, out: Path) -> None:
    """Open the dashboard, silence one alert from its banner and save the picture to out."""
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(f"{stack.web_url}/")
        page.wait_for_selector("#conn-badge[data-state='live']")
        for rule in ("ecc", "temperature", SILENCED_RULE):
            page.wait_for_selector(
                f"#alert-banner-list .alert-item[data-rule='{rule}']", timeout=FIRES_WITHIN_MS
            )
        page.locator(f"#alert-banner-list .alert-item[data-rule='{SILENCED_RULE}']").get_by_role(
            "button", name="4 h", exact=True
        ).click()
        page.wait_for_selector(
            f"#alert-banner-list .alert-item[data-rule='{SILENCED_RULE}'][data-silenced='true']"
        )
        page.wait_for_selector("#alert-history tbody tr[data-state='resolved']")
        page.wait_for_selector(".gpu-card .process-table tbody tr")
        page.wait_for_function(
            "() => Number(document.querySelector(\"[data-delivery='sent']\").textContent) > 0",
            timeout=FIRES_WITHIN_MS,
        )
        page.wait_for_timeout(1000)
        bottom = page.evaluate(
            "() => document.getElementById('alerts-section').getBoundingClientRect().bottom"
            " + window.scrollY"
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        clip = {"x": 0, "y": 0, "width": VIEWPORT["width"], "height": bottom + 16}
        page.screenshot(path=str(out), full_page=True, clip=clip)
        browser.close()


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and take the screenshot."""
    return screenshot_main(argv, take, DEFAULT_OUT, __doc__)


if __name__ == "__main__":
    sys.exit(main())
