"""The dashboard with a keyboard only, in the real Chromium: every control is reached and works.

A real stack of 2 simulated GPUs at 1 s (GPU 0 trains, so its card lists processes). Only keys
are pressed (Tab, Shift+Tab, Enter, Space, arrows, Escape), never a click: the tests reach each
control by tabbing, operate it, and check after every key that the focus is on an element, never
dropped to <body>. The point-in-time process panel opens from the picker under the charts,
takes the focus, closes on Escape and gives the focus back to the button that opened it.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Page

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

GPU_COUNT = 2
MAX_TABS = 400  # far more tab stops than the page has: a loop that never ends fails instead
FOCUS_RING_RGB = "rgb(255, 212, 59)"

# A name for the focused element that stays the same when a redraw replaces it.
KEY_JS = """(el) => {
  if (!el || el === document.body || el === document.documentElement) return 'BODY';
  const row = el.closest('tr[data-pid]');
  const card = el.closest('[data-gpu-uuid]');
  return [el.tagName.toLowerCase(), el.id, el.dataset.range, el.dataset.usageBy,
    el.dataset.alertState, el.dataset.alertRange, el.dataset.chart, el.dataset.line,
    card ? card.dataset.gpuUuid : '', row ? row.dataset.pid : '',
    el.getAttribute('href') || '', el.className].join('|');
}"""

# Every control a user can see and use: what a Tab must reach.
CONTROLS_JS = (
    """() => { const key = """
    + KEY_JS
    + """;
  const controls = document.querySelectorAll(
    'a[href], button:not([disabled]), select:not([disabled]), input:not([disabled]), summary');
  return [...controls].filter((el) => el.checkVisibility() && el.getClientRects().length
    && !el.closest('[hidden]') && el.tabIndex >= 0).map(key);
}"""
)

ACTIVE_JS = "() => (" + KEY_JS + ")(document.activeElement)"


WINDOW_S = 600  # how long GPU 0 must keep a process for this module's tests


def has_process(host: str, t_s: float) -> bool:
    """Return whether the simulated GPU 0 of host runs a process at t_s."""
    nvml = SimulatedNvml(GPU_COUNT, host=host, clock=lambda: t_s)
    nvml.nvmlInit()
    return bool(nvml.processes(nvml.devices[0]))


def busy_host() -> str:
    """Return a host name whose simulated GPU 0 runs a process for the next WINDOW_S (checked
    every 30 s): the simulated load is a function of the host name and the time."""
    now_s = time.time()
    for number in range(10_000):
        host = f"keys{number}"
        if all(has_process(host, now_s + offset) for offset in range(0, WINDOW_S + 1, 30)):
            return host
    raise AssertionError("no host name keeps the simulated GPU 0 busy")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"PCW_HOST_NAME": busy_host(), "PCW_SIM_GPUS": str(GPU_COUNT), "PCW_INTERVAL_S": "1"}
    with running_stack(tmp_path_factory.mktemp("keyboard"), env, ticks=3) as running:
        yield running


@pytest.fixture
def keys_page(browser: Browser, watch: Watch) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    opened = context.new_page()
    watch.attach(opened)
    yield opened
    context.close()


def open_page(page: Page, stack: Stack) -> None:
    page.goto(stack.web_url + "/")
    page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
    page.wait_for_selector(".gpu-card .process-row .process-more-button")
    page.wait_for_selector("#conn-badge[data-state='live']")
    page.wait_for_function(
        "() => document.getElementById('history-status').textContent.includes('buckets')"
    )
    page.wait_for_selector("#gpu-toggles button >> nth=1")


def active(page: Page) -> str:
    return page.evaluate(ACTIVE_JS)


def press(page: Page, key: str) -> str:
    """Press key; return the focused element's key, failing if the focus fell to <body>."""
    page.keyboard.press(key)
    now = active(page)
    assert now != "BODY", f"the focus fell to <body> after {key}"
    return now


def tab_to(page: Page, selector: str) -> None:
    """Tab forward until the focused element matches selector (never through <body>)."""
    for _ in range(MAX_TABS):
        press(page, "Tab")
        if page.evaluate("(s) => document.activeElement.matches(s)", selector):
            return
    raise AssertionError(f"{selector} is never reached with Tab")


def test_tab_reaches_every_control_and_never_body(keys_page: Page, stack: Stack, watch: Watch):
    page = keys_page
    open_page(page, stack)
    controls = page.evaluate(CONTROLS_JS)
    assert len(controls) > 20, controls
    reached: list[str] = []
    page.keyboard.press("Tab")  # from the document's start: the first tab stop
    first = active(page)
    assert first != "BODY"
    reached.append(first)
    for _ in range(MAX_TABS):
        page.keyboard.press("Tab")
        now = active(page)
        if now in ("BODY", first):  # past the last tab stop: out to the browser, or round
            break
        reached.append(now)
    else:
        raise AssertionError(f"more than {MAX_TABS} tab stops")
    missed = [control for control in controls if control not in reached]
    assert missed == [], missed
    for kind in ("data-range", "gpu-toggle", "chart-table-toggle", "point-show", "summary"):
        assert any(kind.split("-", 1)[-1] in key or kind in key for key in reached), kind
    # Shift+Tab walks back the same way without losing the focus.
    for _ in range(5):
        press(page, "Shift+Tab")
    watch.assert_clean()


def test_focus_ring_is_visible_and_unlike_selected(keys_page: Page, stack: Stack):
    page = keys_page
    open_page(page, stack)
    tab_to(page, "[data-range='1h']")  # the selected range (1h is the default)
    focused = page.evaluate(
        """() => { const s = getComputedStyle(document.activeElement);
             return [s.outlineStyle, parseFloat(s.outlineWidth), s.outlineColor]; }"""
    )
    assert focused[0] == "solid" and focused[1] >= 2 and focused[2] == FOCUS_RING_RGB, focused
    press(page, "Tab")  # the focus moves on: the selected button keeps no ring
    selected = page.evaluate(
        """() => { const b = document.querySelector("[data-range='1h']");
             return [b.getAttribute('aria-pressed'), getComputedStyle(b).outlineStyle]; }"""
    )
    assert selected == ["true", "none"], selected


def test_keys_operate_range_usage_lines_tables_and_details(keys_page: Page, stack: Stack):
    page = keys_page
    open_page(page, stack)

    tab_to(page, "[data-range='6h']")
    press(page, "Enter")
    page.wait_for_selector("[data-range='6h'][aria-pressed='true']")
    assert "range=6h" in page.url

    # A GPU's lines off and on again, from its toggle button; the focus stays on it.
    tab_to(page, "#gpu-toggles button")
    uuid = page.evaluate("() => document.activeElement.dataset.gpuUuid")
    press(page, "Space")
    page.wait_for_selector(f"#gpu-toggles button[data-gpu-uuid='{uuid}'][aria-pressed='false']")
    hidden = page.evaluate(
        """(uuid) => ['chart-util', 'chart-temp', 'chart-mem', 'chart-power'].map((id) => {
             const chart = Chart.getChart(id);
             const i = chart.data.datasets.findIndex((d) => d.pcwUuid === uuid);
             return chart.isDatasetVisible(i); })""",
        uuid,
    )
    assert hidden == [False, False, False, False]
    assert page.evaluate("() => document.activeElement.dataset.gpuUuid") == uuid
    press(page, "Enter")
    page.wait_for_selector(f"#gpu-toggles button[data-gpu-uuid='{uuid}'][aria-pressed='true']")

    # A chart's buckets as a table, from its Table button (Shift+Tab: it is above the toggles).
    for _ in range(MAX_TABS):
        if page.evaluate("() => document.activeElement.matches('.chart-table-toggle')"):
            break
        press(page, "Shift+Tab")
    chart_id = page.evaluate("() => document.activeElement.dataset.chart")
    press(page, "Enter")
    box = page.locator(f"#{chart_id}-table-box")
    assert box.is_visible()
    assert box.locator("tbody tr").count() > 0
    assert box.locator("thead th").count() == 1 + GPU_COUNT
    press(page, "Enter")
    assert box.is_hidden()

    tab_to(page, "[data-usage-by='process']")  # below the charts
    press(page, "Space")
    page.wait_for_selector("[data-usage-by='process'][aria-pressed='true']")


def test_process_details_open_from_the_keyboard(keys_page: Page, stack: Stack):
    page = keys_page
    open_page(page, stack)
    page.keyboard.press("Tab")
    tab_to(page, ".gpu-card .process-more-button")
    pid = page.evaluate("() => document.activeElement.closest('tr').dataset.pid")
    press(page, "Enter")
    detail = page.locator(f".gpu-card tr.process-detail[data-pid='{pid}']").first
    detail.wait_for(state="visible")
    text = detail.inner_text()
    assert "Command line" in text and "Running since" in text, text
    # Still open, and still focused, after the next ticks redraw the table.
    page.wait_for_timeout(2500)
    assert detail.is_visible()
    assert active(page) != "BODY"
    tab_to(page, ".gpu-card summary")
    press(page, "Enter")
    assert page.evaluate("() => document.activeElement.closest('details').open")


def test_process_panel_opens_from_the_keyboard_and_closes_on_escape(
    keys_page: Page, stack: Stack, watch: Watch
):
    page = keys_page
    open_page(page, stack)
    tab_to(page, "#point-gpu")
    press(page, "ArrowDown")  # GPU 1, then back to GPU 0: the one that trains
    press(page, "ArrowUp")
    assert page.evaluate("() => document.getElementById('point-gpu').selectedIndex") == 0
    tab_to(page, "#point-time")
    last = page.evaluate("() => Number(document.activeElement.value)")
    press(page, "ArrowLeft")  # one bucket back
    chosen = page.evaluate("() => Number(document.activeElement.value)")
    assert chosen < last
    tab_to(page, "#point-show")
    press(page, "Enter")
    page.wait_for_selector("#point-panel[data-state='loaded']")
    assert page.evaluate("() => document.activeElement.id") == "point-panel"
    assert page.locator("#point-table tbody tr.process-row").count() > 0
    # The panel's own controls are reachable: its Close button, then Escape from inside.
    tab_to(page, "#point-close")
    press(page, "Escape")
    assert page.locator("#point-panel").is_hidden()
    assert page.evaluate("() => document.activeElement.id") == "point-show"
    # Opened again, and closed from its Close button with Enter: the focus comes back too.
    press(page, "Enter")
    page.wait_for_selector("#point-panel[data-state='loaded']")
    tab_to(page, "#point-close")
    press(page, "Enter")
    assert page.locator("#point-panel").is_hidden()
    assert page.evaluate("() => document.activeElement.id") == "point-show"
    watch.assert_clean()
