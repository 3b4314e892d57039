"""No text in a tooltip only: what an element's `title` says is also on the page, in words.

A `title` shows on a mouse's hover alone: a keyboard, a touch screen and a screen magnifier
never show it. So on the live page and on each GPU's page, at a phone's width (390 px) and a
wall screen's (1920 px), every rendered element with a title must have that title's text (each
of its lines, whitespace and case aside) somewhere in the page's visible text: either shown as
it is, or inside a disclosure (a <button aria-expanded> or a <details>) that the test first
opens from the keyboard, as a user would: focus, then Enter. Visible text is what a sighted
reader sees whole: rendered, not visually hidden, not cut by an ellipsis.

The stack: 4 simulated GPUs, one hot (throttled, alerts firing), one lost (a GPU in error), one
held idle by a process, one split into MIG instances that reports an XID (a health finding and
events); and the accessibility test's 30-day file of 2 stale hosts. ALLOWED lists the titles
left to other modules' owners, each with its reason.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_a11y import HISTORY_GPUS, HISTORY_HOSTS, history_stack
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser
__all__ = ["history_stack"]  # the 30-day file of stale hosts that the accessibility test reads

WIDTHS_PX = (390, 1920)
GPU_COUNT = 4
HOT, LOST, IDLE, MIG = 0, 1, 2, 3
HOST = "hover-free"
MAX_DISCLOSURES = 200  # a bound on the loop that opens them, far above what the page holds

# CSS selector -> why its title may stay a tooltip only: each says why its text needs no words
# of its own on the page. The cards' and the legend's titles are checked like any other.
ALLOWED: dict[str, str] = {
    "#conn-badge": "the navbar's badge (index.html) has no room for a sentence; when every host"
    " is stale, the problems strip's Details say since when each sent nothing",
    ".alert-badge": "a count: the alerts section lists each of these alerts in words, with its"
    " GPU and its rule (alert_items.js)",
}

# The visible text of the page, whitespace collapsed, lower case, then every rendered element
# whose title (a line of it) is not in that text, with where it is.
MISSING_JS = """(allowed) => {
  const norm = (text) => text.replace(/\\s+/g, ' ').trim().toLowerCase();
  const seen = (el) => {
    if (!el.checkVisibility({ visibilityProperty: true, opacityProperty: true })) return false;
    for (let node = el; node && node !== document.body; node = node.parentElement) {
      if (node.classList.contains('visually-hidden')) return false;
      const style = getComputedStyle(node);
      const cut = style.textOverflow === 'ellipsis' && node.scrollWidth > node.clientWidth + 1;
      if (cut) return false;
    }
    return true;
  };
  const parts = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (node.nodeValue.trim() && parent && seen(parent)) parts.push(node.nodeValue);
  }
  const text = norm(parts.join(' '));
  const missing = [];
  for (const el of document.querySelectorAll('body [title]')) {
    if (!el.title.trim() || !el.checkVisibility()) continue;
    if (allowed.some((selector) => el.matches(selector))) continue;
    for (const line of el.title.split('\\n')) {
      if (line.trim() && !text.includes(norm(line))) {
        missing.push(`<${el.tagName.toLowerCase()} class="${el.className}"> title="${line}"`);
      }
    }
  }
  return missing;
}"""

# The next disclosure still closed and not yet tried: a button that says it is collapsed and
# which part it controls, or the summary of a closed <details>; null when none is left.
NEXT_CLOSED_JS = """() => {
  const candidates = document.querySelectorAll(
    'button[aria-expanded="false"][aria-controls]:not([data-test-tried]),'
    + ' details:not([open]) > summary:not([data-test-tried])');
  const next = [...candidates].find((el) => el.checkVisibility() && !el.disabled);
  if (next) next.dataset.testTried = '';
  return next || null;
}"""

OPENED_JS = """(el) => !el.isConnected || (el.tagName === 'SUMMARY'
  ? el.parentElement.open : el.getAttribute('aria-expanded') === 'true')"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PCW_HOST_NAME": HOST,
        "PCW_SIM_GPUS": str(GPU_COUNT),
        "PCW_SIM_HOT_GPUS": str(HOT),
        "PCW_SIM_LOST_GPUS": str(LOST),
        "PCW_SIM_IDLE_GPUS": str(IDLE),
        "PCW_SIM_MIG_GPUS": str(MIG),
        "PCW_SIM_XID_GPUS": str(MIG),
        "PCW_IDLE_AFTER_S": "1",
        "PCW_INTERVAL_S": "1",
        "PCW_ALERT_TEMP_FOR_S": "1",
        "PCW_ALERT_THROTTLE_FOR_S": "1",
    }
    with running_stack(tmp_path_factory.mktemp("hover-free"), env, ticks=3) as running:
        yield running


@pytest.fixture(params=WIDTHS_PX, ids=[f"{width_px}px" for width_px in WIDTHS_PX])
def viewport(request: pytest.FixtureRequest) -> dict[str, int]:
    """The page's size (test_dashboard's `page` fixture opens it): each width, 900 px high."""
    return {"width": request.param, "height": 900}


def open_every_disclosure_from_the_keyboard(page: Page) -> int:
    """Focus each closed disclosure in turn and press Enter; return how many were opened."""
    for opened in range(MAX_DISCLOSURES):
        element = page.evaluate_handle(NEXT_CLOSED_JS).as_element()
        if element is None:
            return opened
        element.focus()
        assert page.evaluate("(el) => !el.isConnected || document.activeElement === el", element)
        page.keyboard.press("Enter")
        assert page.evaluate(OPENED_JS, element), element.evaluate("(el) => el.outerHTML")
    raise AssertionError(f"more than {MAX_DISCLOSURES} disclosures: the page keeps making new ones")


def assert_no_hover_only_text(page: Page, what: str) -> None:
    assert page.viewport_size is not None
    where = f"{what} at {page.viewport_size['width']} px"
    opened = open_every_disclosure_from_the_keyboard(page)
    missing = page.evaluate(MISSING_JS, list(ALLOWED))
    assert missing == [], f"{where}: {len(missing)} titles not on the page:\n" + "\n".join(missing)
    assert page.evaluate("() => document.documentElement.scrollWidth <= window.innerWidth"), (
        f"{where}: the page scrolls sideways once its {opened} disclosures are open"
    )


def uuid_of(index: int) -> str:
    return SimulatedNvml(GPU_COUNT, host=HOST).devices[index].uuid


def test_the_live_page_says_in_words_what_its_tooltips_say(page: Page, stack: Stack, watch: Watch):
    page.goto(stack.web_url + "/")
    page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
    page.wait_for_selector("#conn-badge[data-state='live']")
    page.wait_for_selector(".gpu-card[data-state='error']")
    page.wait_for_selector(".gpu-card[data-idle='true']", timeout=20_000)
    page.wait_for_selector(".gpu-card .mig-device")
    page.wait_for_selector("#problems-box:not([hidden])")
    page.wait_for_selector("#alerts-active .alert-item")
    page.wait_for_selector("#usage-table:not([hidden])")
    page.wait_for_function(
        "() => document.getElementById('history-status').textContent.includes('buckets')"
    )
    assert_no_hover_only_text(page, "live page")
    watch.assert_clean()


@pytest.mark.parametrize("index", [HOT, LOST, IDLE, MIG], ids=["hot", "lost", "idle", "mig-xid"])
def test_a_gpu_page_says_in_words_what_its_tooltips_say(
    page: Page, stack: Stack, watch: Watch, index: int
):
    if index == LOST:  # a lost GPU is known by the UUID the sampler gives it: read it off its card
        page.goto(stack.web_url + "/")
        page.wait_for_selector(".gpu-card[data-state='error']")
        uuid = page.locator(".gpu-card[data-state='error']").get_attribute("data-gpu-uuid")
    else:
        uuid = uuid_of(index)
    page.goto(f"{stack.web_url}/gpu/{uuid}")
    page.wait_for_function(  # the header, the events and the processes are in
        "() => document.getElementById('gpu-updated').textContent !== ''"
        " && document.getElementById('events-status').textContent.startsWith('as of')"
        " && document.getElementById('processes-status').textContent === ''"
    )
    if index == MIG:
        page.wait_for_selector("#gpu-header .gpu-finding")
        page.wait_for_selector(".gpu-event")
    # The hot GPU's simulated job stops for 30 % of each 20-minute cycle (simulated_nvml.py), so
    # its page may rightly list no process: the idle GPU's and the MIG GPU's always do.
    if index in (IDLE, MIG):
        page.wait_for_selector("#now-processes .process-row")
    assert_no_hover_only_text(page, f"GPU {index}'s page")
    watch.assert_clean()


def test_the_30_day_page_of_stale_hosts_says_in_words_since_when(
    page: Page, history_stack: Stack, watch: Watch
):
    page.goto(history_stack.web_url + "/?range=30d")
    page.wait_for_function(
        "(n) => document.querySelectorAll(\".gpu-card[data-state='stale']\").length === n",
        arg=HISTORY_HOSTS * HISTORY_GPUS,
    )
    page.wait_for_selector(".host-group[data-stale='true'] .host-seen")
    page.wait_for_function(
        "() => document.getElementById('history-status').textContent.includes('buckets')"
    )
    assert_no_hover_only_text(page, "30-day page of stale hosts")
    watch.assert_clean()
