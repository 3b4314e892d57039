"""In the browser: each GPU card says whether the GPU is healthy and, if not, why, in words.

The real stack on four simulated GPUs: GPU 1 (H100) reported XID 13 at the start, GPU 2 (A100)
has rows pending remap after uncorrectable ECC errors, GPU 3 (L40S) has its PCIe link trained
down to x8. The same cases in the events list and in /metrics, from the same stack.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

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
    # x8 of x16 whatever the load; the generation is Gen1 while idle (power saving), else Gen4
    assert re.match(r"PCIe Gen[14] x8 \(max Gen4 x16\) since ", link), link
    badge = card(page, 2).locator(".health-badge")
    assert badge.inner_text() == "2 health issues"
    assert card(page, 3).locator(".health-badge").inner_text() == "1 health issue"
    # the GeForce card's health is known: a badge either way, never a blank
    expect(card(page, 0).locator(".health-badge")).to_be_visible()
    watch.assert_clean()


def get(stack: Stack, path: str) -> bytes:
    with urllib.request.urlopen(stack.web_url + path, timeout=5) as response:
        return response.read()


def test_the_same_cases_are_in_the_events_list_and_in_metrics(stack: Stack):
    uuids = [device.uuid for device in SimulatedNvml(4, host=HOST).devices]
    events = json.loads(get(stack, "/api/v1/events"))["events"]
    kinds = {(event["gpu_uuid"], event["kind"]) for event in events}
    xids = [e for e in events if e["kind"] == "xid" and e["gpu_uuid"] == uuids[1]]

    assert xids and xids[0]["code"] == 13 and xids[0]["text"].startswith("XID 13 (")
    assert (uuids[2], "remap_pending") in kinds and (uuids[2], "ecc_uncorrected") not in kinds
    assert (uuids[3], "link_downgraded") in kinds
    assert not any(uuid == uuids[0] for uuid, _ in kinds)  # the GeForce is healthy

    metrics = get(stack, "/metrics").decode()

    def sample(name: str, index: int) -> float:
        [line] = [
            line for line in metrics.splitlines()
            if line.startswith(name + "{") and f'UUID="{uuids[index]}"' in line
        ]  # fmt: skip
        return float(line.rsplit(" ", 1)[1])

    # (DCGM_FI_DEV_XID_ERRORS is the last XID the web saw live, as dcgm-exporter's: the one at
    # the start may come before the web listens; tests/web/test_dcgm_coverage.py has it)
    assert sample("DCGM_FI_DEV_ROW_REMAP_PENDING", 2) == 1
    assert sample("DCGM_FI_DEV_UNCORRECTABLE_REMAPPED_ROWS", 2) == 2
    assert sample("DCGM_FI_DEV_PCIE_LINK_WIDTH", 3) == 8
    assert sample("DCGM_FI_DEV_PCIE_MAX_LINK_WIDTH", 3) == 16
