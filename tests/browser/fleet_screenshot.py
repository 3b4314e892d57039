"""Take the README's picture of the fleet view: 256 simulated GPUs on 32 hosts.

    python -m tests.browser.fleet_screenshot [--out docs/img/fleet.png]

The fleet of the fleet benchmark and browser tests (tests.bench.fleet_stack: an hour of history
through the writer's own storage code, one real web process, every host's ticks from one ZeroMQ
publisher); a few GPUs of the first hosts are given processes, so that "Held by" shows users. A
headless Chromium (Debian's, as in the browser tests) opens the dashboard, which picks the fleet
view by itself, and takes a picture 1400 x 1300 pixels: the heatmap and the first hosts' rows.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import msgspec
from playwright.sync_api import sync_playwright

from common.messages import GpuProcess
from tests.bench.fleet_stack import running_fleet
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS
from tests.stack import REPO

HOSTS = 32
GPUS_PER_HOST = 8
VIEWPORT = {"width": 1400, "height": 1300}
DEFAULT_OUT = REPO / "docs" / "img" / "fleet.png"
GIB = 1024**3
HOLDERS = {
    (0, 0): ("alice", "train.py"),
    (0, 1): ("alice", "train.py"),
    (0, 5): ("bob", "jupyter"),
    (1, 2): ("carol", "vllm"),
    (1, 3): ("carol", "vllm"),
}


def main(argv: list[str] | None = None) -> int:
    """Run the fleet, open the page, write the picture; return an exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    with (
        tempfile.TemporaryDirectory(prefix="pcw-fleet-shot-") as folder,
        running_fleet(Path(folder), HOSTS, GPUS_PER_HOST) as fleet,
        sync_playwright() as pw,
    ):
        for (host, index), (user, name) in HOLDERS.items():
            held = GpuProcess(pid=4000 + index, used_mem_bytes=20 * GIB, visible=True)
            fleet.holders[(host, index)] = [msgspec.structs.replace(held, name=name, user=user)]
        fleet.tick_all()
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport=VIEWPORT)
        page.goto(fleet.url + "/")
        page.wait_for_selector("#fleet[data-ready='true']", timeout=60_000)
        page.wait_for_selector("#conn-badge[data-state='live']")
        page.wait_for_selector("#fleet-heatmap[data-buckets]", state="attached")
        page.wait_for_function(
            "() => document.querySelector('tr.fleet-gpu .fleet-c-holders').textContent === 'alice'"
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(args.out))
        browser.close()
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
