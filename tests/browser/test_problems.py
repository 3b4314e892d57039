"""In the browser: a strip at the top names what is wrong now, each item a link to its GPU's card
or its host, with the count in the page title; the badge says "live" only while a host sends.

Two real stacks on simulated GPUs. One, seen on a 390 px phone, at 1 s: GPU 0 runs hot (the host
is chosen so that it is throttled throughout the test), GPU 1 was lost before the start, GPU 2
is held idle by a forgotten notebook (flagged after 1 s). The other is one plain GPU at 0.5 s,
all well until its sampler stops and the server calls its host stale (11.5 s later).
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Locator, Page, expect

from common.health import LIMITING_REASONS_MASK
from common.staleness import stale_after_s
from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

PHONE = {"width": 390, "height": 844}
GPU_COUNT = 3
HOT, LOST, IDLE = 0, 1, 2
THROTTLED_FOR_S = 35  # from the fixture's start: longer than the phone test takes
SHOWS_WITHIN_MS = 20_000  # a GPU's idle flag may wait for the page's next poll (15 s)
PLAIN_HOST = "problems-plain"
PLAIN_INTERVAL_S = 0.5


def simulated(host: str, clock: object = time.time) -> SimulatedNvml:
    """Return the simulation the problem stack's sampler runs for host."""
    return SimulatedNvml(
        GPU_COUNT,
        host=host,
        clock=clock,  # type: ignore[arg-type]
        hot_gpus=(HOT,),
        lost_gpus=(LOST,),
        idle_gpus=(IDLE,),
    )


def throttled_throughout(host: str, from_s: float, for_s: int) -> bool:
    """Return whether host's hot GPU is held back by heat at every second from from_s on."""
    now = {"s": from_s}
    gpus = simulated(host, clock=lambda: now["s"])
    gpus.nvmlInit()
    handle = gpus.nvmlDeviceGetHandleByIndex(HOT)
    for step in range(for_s + 1):
        now["s"] = from_s + step
        if not gpus.nvmlDeviceGetCurrentClocksEventReasons(handle) & LIMITING_REASONS_MASK:
            return False
    return True


def throttled_host(prefix: str) -> str:
    """Return a host name (prefix-N) whose hot GPU is throttled from now for THROTTLED_FOR_S.

    The simulated load follows the wall clock, from the host name: a hot GPU is throttled at the
    top of its training only, and its limits come and go there; a name is chosen whose GPU stays
    throttled for the whole test, so that the strip's items stay the same while it runs.
    """
    now_s = float(int(time.time()))
    for number in range(20_000):
        host = f"{prefix}-{number}"
        if throttled_throughout(host, now_s, THROTTLED_FOR_S):
            return host
    raise LookupError(f"no simulated host stays throttled for {THROTTLED_FOR_S} s from now")


def problems_env(host: str) -> dict[str, str]:
    """Return the settings of a stack with every kind of problem: GPU HOT hot (it throttles
    under load), GPU LOST lost (a GPU in error), GPU IDLE held idle by a process, ticking every
    second. The accessibility test and the README's pictures run the same stack."""
    return {
        "PCW_HOST_NAME": host,
        "PCW_SIM_GPUS": str(GPU_COUNT),
        "PCW_SIM_HOT_GPUS": str(HOT),
        "PCW_SIM_LOST_GPUS": str(LOST),
        "PCW_SIM_IDLE_GPUS": str(IDLE),
        "PCW_IDLE_AFTER_S": "1",
        "PCW_INTERVAL_S": "1",
    }


@pytest.fixture
def problem_stack(tmp_path: Path) -> Iterator[Stack]:
    env = problems_env(throttled_host("problems"))
    with running_stack(tmp_path, env, ticks=3) as running:
        yield running


@pytest.fixture
def plain_stack(tmp_path: Path) -> Iterator[Stack]:
    env = {
        "PCW_HOST_NAME": PLAIN_HOST,
        "PCW_SIM_GPUS": "1",
        "PCW_INTERVAL_S": str(PLAIN_INTERVAL_S),
    }
    with running_stack(tmp_path, env, ticks=2) as running:
        yield running


def get(stack: Stack, path: str) -> bytes:
    with urllib.request.urlopen(stack.web_url + path, timeout=5) as response:
        return response.read()


def problem(page: Page, kind: str, key: str) -> Locator:
    """Return the strip's item of one problem: kind, and the GPU's UUID or the host's name."""
    return page.locator(f"#problems-list .problem[data-key='{kind}:{key}']")


def strip_keys(page: Page) -> list[str]:
    return page.locator("#problems-list .problem").evaluate_all(
        "(items) => items.map((item) => item.dataset.key)"
    )


# Records each change to the strip that a reader would see or that moves the page: items in or
# out, any text, a link's target, what is hidden. Not a link's title (a tooltip, whose details,
# such as which limits throttle a GPU, may follow the data).
WATCH_STRIP_JS = """() => {
  window.pcwStripChanges = [];
  new MutationObserver((records) => {
    for (const record of records) {
      window.pcwStripChanges.push(`${record.type} ${record.attributeName || ''}`);
    }
  }).observe(document.getElementById('problems'), {
    subtree: true, childList: true, characterData: true,
    attributes: true, attributeFilter: ['hidden', 'href', 'class'],
  });
}"""


def test_on_a_phone_the_strip_names_each_problem_first_and_leads_to_its_card(
    browser: Browser, problem_stack: Stack
):
    host = problem_stack.env["PCW_HOST_NAME"]
    hot_uuid, _, idle_uuid = (device.uuid for device in simulated(host).devices)
    watch = Watch()
    context = browser.new_context(viewport=PHONE)
    page = context.new_page()
    watch.attach(page)
    try:
        page.goto(problem_stack.web_url + "/")
        expect(page.locator("#conn-badge")).to_have_attribute("data-state", "live")
        lost_card = page.locator(".gpu-card[data-state='error']")
        lost_uuid = lost_card.get_attribute("data-gpu-uuid")
        assert lost_uuid and lost_uuid.startswith("unread-")

        lost = problem(page, "error", lost_uuid)
        idle = problem(page, "idle", idle_uuid)
        hot = problem(page, "throttled", hot_uuid)
        for item in (lost, idle, hot):
            expect(item).to_be_visible(timeout=SHOWS_WITHIN_MS)
        # worst first: the GPU in error, then the throttled one, then the idle one; nothing else
        assert strip_keys(page) == [
            f"error:{lost_uuid}", f"throttled:{hot_uuid}", f"idle:{idle_uuid}"
        ]  # fmt: skip
        expect(lost).to_have_text(f"GPU {LOST} in error")
        assert "GPU is lost" in lost.locator("a").get_attribute("title")
        expect(hot).to_have_text(f"GPU {HOT} throttled")
        assert hot.locator("a").get_attribute("title").startswith("throttled: ")
        expect(idle).to_have_text(f"GPU {IDLE} idle but allocated")
        expect(page.locator("#problems-title")).to_have_text("3 problems")
        assert page.title() == f"(3) pyCudaWatch · {host}"

        # at the top of the page: on a phone's first screen without scrolling
        assert page.evaluate("() => window.scrollY") == 0
        box = page.locator("#problems-list .problem").first.bounding_box()
        assert box is not None and box["y"] + box["height"] <= PHONE["height"], box

        # ticks come and go; while the problems stay the same, the strip is left alone
        page.evaluate(WATCH_STRIP_JS)
        first_item = page.evaluate_handle("() => document.querySelector('#problems-list li')")
        hot_card = f".gpu-card[data-gpu-uuid='{hot_uuid}']"
        page.wait_for_function(
            "([card, ts]) => Number(document.querySelector(card).dataset.ts) >= ts + 3",
            arg=[hot_card, float(page.get_attribute(hot_card, "data-ts"))],
            timeout=15_000,
        )
        assert page.evaluate("() => window.pcwStripChanges") == []
        assert page.evaluate(
            "(item) => item === document.querySelector('#problems-list li')", first_item
        )

        # each item leads to its GPU's card, shown whole below the sticky navbar (two rows here)
        navbar = page.locator("nav.navbar").bounding_box()
        assert navbar is not None
        for item, uuid in ((lost, lost_uuid), (idle, idle_uuid)):
            item.locator("a").click()
            assert page.evaluate("() => location.hash") == f"#gpu-{uuid}"
            card = page.locator(f".gpu-card[data-gpu-uuid='{uuid}']")
            expect(card).to_be_in_viewport()
            top = card.bounding_box()
            assert top is not None and top["y"] >= navbar["height"], (top, navbar)
        watch.assert_clean()
    finally:
        context.close()


def test_all_well_no_strip_then_a_silent_host_is_a_problem_and_the_badge_says_stale(
    page: Page, plain_stack: Stack, watch: Watch
):
    page.goto(plain_stack.web_url + "/")
    badge = page.locator("#conn-badge")
    expect(badge).to_have_attribute("data-state", "live")
    expect(badge).to_have_text("live")
    card = page.locator(".gpu-card[data-state='ok']")
    ts = card.get_attribute("data-ts")
    # a few ticks in, the GPU list and the hosts asked for: still nothing wrong
    page.wait_for_function(
        "(ts) => Number(document.querySelector('.gpu-card').dataset.ts) > Number(ts) + 1",
        arg=ts,
    )
    expect(page.locator("#problems-box")).to_be_hidden()
    expect(page.locator("#problems")).to_have_attribute("data-count", "0")
    assert page.title() == f"pyCudaWatch · {PLAIN_HOST}"

    assert plain_stack.stop("sampler") == 0
    # the server calls the host stale stale_after_s after its last tick, and says so at once
    within_ms = (stale_after_s(PLAIN_INTERVAL_S) + 15) * 1000
    silent = problem(page, "stale", PLAIN_HOST)
    expect(silent).to_be_visible(timeout=within_ms)
    assert strip_keys(page) == [f"stale:{PLAIN_HOST}"]  # its GPU is the host's problem, not its own
    expect(silent).to_have_text(re.compile(rf"^{PLAIN_HOST}: no reading since \d{{1,2}}:\d{{2}}"))
    assert page.title() == f"(1) pyCudaWatch · {PLAIN_HOST}"

    # connected, but the only host is silent: not "live"; since when, by the newest reading
    expect(badge).to_have_attribute("data-state", "stale")
    [host] = json.loads(get(plain_stack, "/api/v1/hosts"))["hosts"]
    assert host["stale"] is True
    newest = page.evaluate(
        """(ts) => new Date(ts * 1000)
             .toLocaleTimeString(undefined, { hour: '2-digit', minute: '2-digit' })""",
        host["last_seen_ts"],
    )
    expect(badge).to_have_text(f"stale since {newest}")
    assert "text-bg-warning" in badge.get_attribute("class")
    expect(badge).to_have_attribute(
        "title", re.compile("^Connected, but no host has sent a reading since ")
    )

    silent.locator("a").click()
    assert page.evaluate("() => location.hash") == f"#host-{PLAIN_HOST}"
    expect(page.locator(f"section.host-group[data-host='{PLAIN_HOST}']")).to_be_in_viewport()
    watch.assert_clean()
