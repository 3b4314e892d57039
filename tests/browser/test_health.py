"""In the browser: each GPU card says whether the GPU is healthy and, if not, why, in words.

The real stack on four simulated GPUs: GPU 1 (H100) reported XID 13 at the start, GPU 2 (A100)
has rows pending remap after uncorrectable ECC errors, GPU 3 (L40S) has its PCIe link trained
down to x8.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack

HOST = "health-in-browser"


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PCW_SIM_GPUS": "4",
        "PCW_SIM_XID_GPUS": "1",
        "PCW_SIM_REMAP_GPUS": "2",
        "PCW_SIM_DEGRADED_LINK_GPUS": "3",
        "PCW_INTERVAL_S": "1",
        "PCW_HOST_NAME": HOST,
    }
    with running_stack(tmp_path_factory.mktemp("stack"), env, ticks=2) as running:
        yield running


def card(page: Page, index: int):
    uuid = SimulatedNvml(4, host=HOST).devices[index].uuid
    return page.locator(f".gpu-card[data-gpu-uuid='{uuid}']")


def findings(page: Page, index: int) -> list[str]:
    return card(page, index).locator(".gpu-finding").all_inner_texts()


def test_each_card_says_what_is_wrong_with_its_gpu_in_words(page: Page, stack: Stack, watch: Watch):
    page.goto(stack.web_url + "/")

    for index in (1, 2, 3):
        expect(card(page, index)).to_have_attribute("data-health", "findings")

    [xid] = findings(page, 1)
    assert xid.startswith("XID 13 (graphics engine exception) at ")
    remap = findings(page, 2)
    assert "2 rows pending remap (a GPU reset applies it)" in remap[0]
    assert remap[0].startswith("2 rows pending remap") and " since " in remap[0]
    assert remap[1].startswith("2 uncorrected ECC errors since the driver loaded since ")
    [link] = findings(page, 3)
    assert link.startswith("PCIe Gen4 x8 (max Gen4 x16) since ")
    badge = card(page, 2).locator(".health-badge")
    assert badge.inner_text() == "2 health issues"
    assert card(page, 3).locator(".health-badge").inner_text() == "1 health issue"
    # the GeForce card's health is known: a badge either way, never a blank
    expect(card(page, 0).locator(".health-badge")).to_be_visible()
    watch.assert_clean()
