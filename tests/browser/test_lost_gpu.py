"""In the browser: a GPU lost before the sampler started has a red card from the first reading.

The real stack on two simulated GPUs, GPU 1 lost before the start (PCW_SIM_LOST_GPUS): NVML
gives its PCI bus id only, so it has no name and no reading, ever.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack

HOST = "lost-in-browser"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PCW_SIM_GPUS": "2",
        "PCW_SIM_LOST_GPUS": "1",
        "PCW_INTERVAL_S": "1",
        "PCW_HOST_NAME": HOST,
    }
    with running_stack(tmp_path_factory.mktemp("stack"), env, ticks=2) as running:
        yield running


def test_a_gpu_lost_before_the_start_has_a_red_card_and_the_other_goes_on(
    page: Page, stack: Stack, watch: Watch
):
    healthy = SimulatedNvml(2, host=HOST).devices[0]
    page.goto(stack.web_url + "/")

    lost = page.locator(".gpu-card[data-state='error']")
    lost.wait_for()
    page.locator(".gpu-card[data-state='ok']").wait_for()

    assert page.locator(".gpu-card").count() == 2
    assert lost.count() == 1
    assert lost.get_attribute("data-gpu-uuid").startswith("unread-")
    text = lost.locator(".gpu-error").inner_text()
    assert "GPU is lost" in text and "failed since " in text
    assert lost.locator(".metric-util").inner_text() == "n/a"
    ok = page.locator(".gpu-card[data-state='ok']")
    assert ok.get_attribute("data-gpu-uuid") == healthy.uuid
    assert ok.locator(".metric-util").inner_text().endswith("%")
    watch.assert_clean()
