"""axe-core in the real Chromium: the dashboard and a GPU's page break no WCAG 2.2 AA rule.

axe-core is the npm package pinned in tests/browser/axe/package-lock.json (scripts/test runs
`npm ci` there); its axe.min.js is injected into each page through Playwright and run on the
page as a user sees it, at a phone's width (390 px) and a wall screen's (1920 px), on:

- the live page of a stack of 3 simulated GPUs, one lost (a GPU in error), one hot, one idle
  but allocated, so that the problems strip, an error card and the idle flag are all drawn;
- a GPU's own page on that stack;
- the 30-day page of a generated history file of 2 hosts x 4 GPUs whose last tick is an hour
  old, so that both hosts are stale and every card is drawn stale.

No violation of impact serious or critical is allowed; a moderate or minor one fails unless it
is listed in ALLOWED with the reason it stays.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from tests.bench.generate import fast_host_ticks, write_ticks
from tests.browser.test_dashboard import Watch
from tests.browser.test_problems import GPU_COUNT, HOT, problems_env
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
WIDTHS_PX = (390, 1920)
LIVE_GPUS = GPU_COUNT
HISTORY_HOSTS = 2
HISTORY_GPUS = 4
HISTORY_DAYS = 30
HISTORY_INTERVAL_S = 600.0
HISTORY_AGE_S = 3600.0  # the last tick's age: far past stale_after_s(600 s) = 1810 s
BLOCKING = ("serious", "critical")

# Rule id -> why a violation of it stays (moderate or minor only; serious and critical never).
ALLOWED: dict[str, str] = {}

AXE_RESULTS_JS = """async () => {
  const result = await axe.run(document, { resultTypes: ['violations'] });
  return result.violations.map((v) => ({
    id: v.id, impact: v.impact, help: v.help, count: v.nodes.length,
    targets: v.nodes.slice(0, 5).map((n) => n.target.join(' ') + ' :: ' + (n.failureSummary || '')),
  }));
}"""


def axe_violations(page: Page) -> list[dict]:
    """Run axe-core on the page as it is now; return its violations (id, impact, nodes)."""
    if not AXE_JS.exists():
        pytest.fail(
            f"{AXE_JS} is missing: run `npm ci --prefix tests/browser/axe` (scripts/test does)"
        )
    page.add_script_tag(path=str(AXE_JS))
    return page.evaluate(AXE_RESULTS_JS)


def assert_accessible(page: Page, where: str) -> None:
    """Fail on any serious or critical violation, and on any other not listed in ALLOWED."""
    violations = axe_violations(page)
    # One line a page, shown with -s: the figures the closing note gives.
    print(
        f"axe {where}: {sum(v['count'] for v in violations)} nodes in violation:",
        ", ".join(f"{v['id']} {v['impact']} x{v['count']}" for v in violations) or "none",
    )
    failing = [v for v in violations if v["impact"] in BLOCKING or v["id"] not in ALLOWED]
    assert failing == [], f"{where}: " + "\n".join(
        f"{v['impact']} {v['id']} ({v['count']}): {v['help']}\n    " + "\n    ".join(v["targets"])
        for v in failing
    )


@pytest.fixture(scope="module")
def live_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = problems_env("a11y-live")
    with running_stack(tmp_path_factory.mktemp("a11y-live"), env, ticks=3) as running:
        yield running


@pytest.fixture(scope="module")
def history_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """A web process alone on 30 days of 2 hosts x 4 GPUs, last read an hour ago: all stale."""
    folder = tmp_path_factory.mktemp("a11y-history")
    db_path = folder / "db" / "gpu_stats.db"
    db_path.parent.mkdir(parents=True)
    count = int(HISTORY_DAYS * 86400 / HISTORY_INTERVAL_S)
    last_ts = (time.time() - HISTORY_AGE_S) // HISTORY_INTERVAL_S * HISTORY_INTERVAL_S
    first_ts = last_ts - (count - 1) * HISTORY_INTERVAL_S
    streams = [
        fast_host_ticks(f"host{h:02d}", HISTORY_GPUS, first_ts, count, HISTORY_INTERVAL_S, h)
        for h in range(HISTORY_HOSTS)
    ]
    write_ticks(db_path, (tick for ticks in zip(*streams, strict=True) for tick in ticks))
    env = {"PCW_DB_PATH": str(db_path), "PCW_HOST_NAME": "a11y-history"}
    with Stack(folder, env, supervised=False, programs=("web",)) as running:
        running.wait_web()
        yield running


@pytest.fixture
def axe_page(browser: Browser, watch: Watch) -> Iterator[Page]:
    """A page that lets the test inject axe-core whatever the server's Content-Security-Policy."""
    context = browser.new_context(bypass_csp=True, viewport={"width": 1920, "height": 1080})
    opened = context.new_page()
    watch.attach(opened)
    yield opened
    context.close()


def wait_history(page: Page) -> None:
    page.wait_for_function(
        "() => document.getElementById('history-status').textContent.includes('buckets')"
    )


def open_live(page: Page, stack: Stack) -> None:
    page.goto(stack.web_url + "/")
    page.wait_for_selector(f".gpu-card >> nth={LIVE_GPUS - 1}")
    page.wait_for_selector(".gpu-card[data-gpu-uuid][data-state='error']")
    page.wait_for_selector(".gpu-card[data-idle='true']", timeout=20_000)
    page.wait_for_selector("#problems-box:not([hidden])")
    page.wait_for_selector("#conn-badge[data-state='live']")
    wait_history(page)


@pytest.mark.parametrize("width_px", WIDTHS_PX)
def test_live_page_with_a_gpu_in_error(axe_page: Page, live_stack: Stack, width_px: int):
    axe_page.set_viewport_size({"width": width_px, "height": 900})
    open_live(axe_page, live_stack)
    assert_accessible(axe_page, f"live page at {width_px} px")


@pytest.mark.parametrize("width_px", WIDTHS_PX)
def test_gpu_page(axe_page: Page, live_stack: Stack, width_px: int):
    axe_page.set_viewport_size({"width": width_px, "height": 900})
    open_live(axe_page, live_stack)
    uuid = axe_page.locator(".gpu-card").nth(HOT).get_attribute("data-gpu-uuid")
    axe_page.goto(f"{live_stack.web_url}/gpu/{uuid}")
    axe_page.wait_for_function(  # every chart drawn (data-lines), the processes listed
        "() => document.querySelectorAll('.gpu-chart').length > 0"
        " && [...document.querySelectorAll('.gpu-chart')].every((c) => c.dataset.lines)"
        " && document.getElementById('processes-status').textContent === ''"
    )
    assert_accessible(axe_page, f"GPU page at {width_px} px")


@pytest.mark.parametrize("width_px", WIDTHS_PX)
def test_30_day_page_of_stale_hosts(axe_page: Page, history_stack: Stack, width_px: int):
    axe_page.set_viewport_size({"width": width_px, "height": 900})
    axe_page.goto(history_stack.web_url + "/?range=30d")
    axe_page.wait_for_selector(f".gpu-card >> nth={HISTORY_HOSTS * HISTORY_GPUS - 1}")
    axe_page.wait_for_function(
        f"() => document.querySelectorAll(\".gpu-card[data-state='stale']\").length"
        f" === {HISTORY_HOSTS * HISTORY_GPUS}"
    )
    wait_history(axe_page)
    assert_accessible(axe_page, f"30-day page of stale hosts at {width_px} px")


# On a phone: what overflows its box sideways (names, process tables), and where the links that
# reach the range buttons are, in the first screen or not.
PHONE_LAYOUT_JS = """() => {
  const wider = (el) => el.scrollWidth > el.clientWidth + 1;
  const nav = document.querySelector('.page-nav a[href="#history"]').getBoundingClientRect();
  return {
    cutNames: [...document.querySelectorAll('.gpu-card .gpu-name')].filter(wider).length,
    sidewaysTables: [...document.querySelectorAll('.gpu-card .table-responsive')]
      .filter((box) => !box.closest('[hidden]') && wider(box)).length,
    pageWider: document.documentElement.scrollWidth > window.innerWidth,
    historyLinkInFirstScreen: nav.top >= 0 && nav.bottom <= window.innerHeight,
    problemsInFirstScreen: document.getElementById('problems-box').getBoundingClientRect().bottom
      <= window.innerHeight,
  };
}"""


def test_phone_wraps_names_stacks_processes_and_reaches_the_range_first(
    axe_page: Page, live_stack: Stack
):
    axe_page.set_viewport_size({"width": 390, "height": 844})
    open_live(axe_page, live_stack)
    axe_page.wait_for_selector(".gpu-card .process-row")
    layout = axe_page.evaluate(PHONE_LAYOUT_JS)
    assert layout == {
        "cutNames": 0,
        "sidewaysTables": 0,
        "pageWider": False,
        "historyLinkInFirstScreen": True,
        "problemsInFirstScreen": True,
    }
    # The link takes the keyboard past every card to the range buttons.
    axe_page.locator('.page-nav a[href="#history"]').focus()
    axe_page.keyboard.press("Enter")
    axe_page.wait_for_function(
        "() => { const r = document.querySelector('[data-range]').getBoundingClientRect();"
        " return r.top >= 0 && r.bottom <= window.innerHeight; }"
    )
