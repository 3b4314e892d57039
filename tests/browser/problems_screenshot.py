"""Take the README's pictures of the problems strip, at desktop and at phone width.

    python -m tests.browser.problems_screenshot [--out docs/img/problems-desktop.png]

The phone picture is saved beside the desktop one, named problems-phone.png. The real stack runs
on three simulated GPUs: one lost (a GPU in error), one hot (it throttles under load) and one
held idle by a process. A headless Chromium (Debian's, as in the browser tests) opens the
dashboard and takes the first screen once the strip names them: 1400x900 for a desktop, and
390x844 at twice the pixels for a phone, where the strip and the error card must come first.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from playwright.sync_api import sync_playwright

from tests.browser.screenshot import main as screenshot_main
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.browser.test_problems import problems_env
from tests.stack import REPO, running_stack

HOST = "gpu-node-7"
DEFAULT_OUT = REPO / "docs" / "img" / "problems-desktop.png"
SCREENS = {
    "desktop": {"viewport": {"width": 1400, "height": 900}, "device_scale_factor": 1},
    "phone": {
        "viewport": {"width": 390, "height": 844},
        "device_scale_factor": 2,
        "is_mobile": True,
        "has_touch": True,
    },
}


def take(out: Path) -> None:
    """Run the stack and save the desktop picture to out, the phone's beside it."""
    with tempfile.TemporaryDirectory(prefix="pcw-screenshot-") as folder:
        env = problems_env(HOST)
        with (
            running_stack(Path(folder), env, ticks=3) as stack,
            sync_playwright() as driver,
        ):
            browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            out.parent.mkdir(parents=True, exist_ok=True)
            for screen, options in SCREENS.items():
                context = browser.new_context(**options)
                page = context.new_page()
                page.goto(f"{stack.web_url}/")
                page.wait_for_selector("#conn-badge[data-state='live']")
                page.wait_for_selector(".gpu-card[data-state='error']")
                page.wait_for_selector(".gpu-card[data-idle='true']", timeout=20_000)
                page.wait_for_selector("#problems-box:not([hidden])")
                page.wait_for_timeout(2000)  # a few live ticks
                path = out if screen == "desktop" else out.with_name("problems-phone.png")
                page.screenshot(path=str(path))
                context.close()
            browser.close()


if __name__ == "__main__":
    sys.exit(screenshot_main(take=take, default_out=DEFAULT_OUT, doc=__doc__))
