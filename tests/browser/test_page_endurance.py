"""A dashboard left open: polls that neither redraw unchanged tables nor pile up, and a sign-out.

Playwright's clock drives the page's timers (the 15 s server poll, the 60 s usage and energy
refresh) forward, so no test waits for them in real time.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, Route

from tests.browser.test_dashboard import Watch
from tests.stack import Stack, running_stack, wait_until

pytestmark = pytest.mark.browser

GPU_COUNT = 4
POLL_MS = 15_000
TABLES_MS = 60_000
# Every change to a per-GPU process table's rows, counted from now on.
COUNT_TABLE_REDRAWS_JS = """() => {
  window.__tableRedraws = 0;
  const observer = new MutationObserver((records) => { window.__tableRedraws += records.length; });
  for (const body of document.querySelectorAll('.gpu-processes tbody')) {
    observer.observe(body, { childList: true, subtree: true, characterData: true });
  }
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    # Every GPU held by a notebook: each card has a process row whatever the time of day (the
    # simulated training jobs come and go with their GPU's load cycle).
    env = {
        "PCW_SIM_GPUS": str(GPU_COUNT),
        "PCW_INTERVAL_S": "1",
        "PCW_SIM_IDLE_GPUS": ",".join(str(index) for index in range(GPU_COUNT)),
    }
    with running_stack(tmp_path_factory.mktemp("stack"), env, ticks=3) as running:
        yield running


def open_with_clock(page: Page, stack: Stack) -> None:
    """Open the dashboard under Playwright's clock; wait for every card's process table."""
    page.clock.install()
    page.goto(f"{stack.web_url}/")
    page.wait_for_selector("#conn-badge[data-state='live']")
    page.wait_for_function(
        """(count) => document.querySelectorAll('.gpu-processes .process-row').length >= count
             && document.querySelectorAll('.gpu-card').length === count""",
        arg=GPU_COUNT,
    )


def cards_show_the_newest_stored_tick(page: Page, stack: Stack) -> bool:
    """Return whether every GPU card shows the newest tick the writer has stored."""
    ((newest_s,),) = stack.query("SELECT max(ts) FROM readings")
    shown = page.evaluate(
        "() => [...document.querySelectorAll('.gpu-card')].map((card) => Number(card.dataset.ts))"
    )
    return bool(shown) and all(ts == newest_s for ts in shown)


def test_a_server_poll_redraws_no_unchanged_process_table(page: Page, stack: Stack, watch: Watch):
    open_with_clock(page, stack)
    stack.stop("sampler")  # no tick from now on: the tables may only change through the poll
    try:
        # the sampler's last tick is on every card: stored by the writer and drawn by the page
        wait_until(
            lambda: cards_show_the_newest_stored_tick(page, stack),
            30,
            "the last tick on every card",
            stack,
        )
        before = page.locator(".gpu-processes .process-row").count()
        page.evaluate(COUNT_TABLE_REDRAWS_JS)
        with page.expect_response(lambda reply: reply.url.endswith("/api/v1/gpus")) as polled:
            page.clock.run_for(POLL_MS + 1000)
        assert polled.value.status == 200
        page.evaluate("() => new Promise((done) => setTimeout(done, 0))")  # the answer is applied

        assert page.evaluate("() => window.__tableRedraws") == 0
        assert page.locator(".gpu-processes .process-row").count() == before
        watch.assert_clean()
    finally:
        stack.start("sampler")


def test_a_slow_server_gets_one_poll_at_a_time(page: Page, stack: Stack, watch: Watch):
    open_with_clock(page, stack)
    held: list[Route] = []
    asked: list[str] = []

    def hold(route: Route) -> None:
        asked.append(route.request.url)
        held.append(route)  # never answered while the test runs: a server that hangs

    for path in ("gpus", "hosts", "usage*", "energy*"):
        page.route(f"**/api/v1/{path}", hold)
    page.clock.run_for(4 * TABLES_MS)  # 16 polls and 4 table refreshes were due

    def count(path: str) -> int:
        return sum(1 for url in asked if url.split("?")[0].endswith(path))

    # One request in flight at a time: a next one only once the page gave up on it (after 120 s).
    assert count("/api/v1/gpus") <= 2, asked  # 16 polls were due
    assert count("/api/v1/hosts") <= 2, asked
    assert 1 <= count("/api/v1/usage") <= 2, asked  # 4 refreshes were due
    assert 1 <= count("/api/v1/energy") <= 2, asked
    page.unroute_all(behavior="ignoreErrors")


def test_a_401_says_signed_out_until_the_server_accepts_the_page_again(
    page: Page, stack: Stack, watch: Watch
):
    open_with_clock(page, stack)
    alert = page.locator("#auth-alert")
    assert alert.is_hidden()

    def refuse(route: Route) -> None:
        route.fulfill(
            status=401,
            headers={"WWW-Authenticate": 'Basic realm="test"'},
            json={"error": "Unauthorized: sign in"},
        )

    page.route("**/api/v1/**", refuse)  # the password was changed on the server
    page.clock.run_for(POLL_MS + 1000)
    alert.wait_for(state="visible")
    assert "reload the page" in alert.inner_text()

    page.unroute("**/api/v1/**")
    page.clock.run_for(POLL_MS + 1000)
    alert.wait_for(state="hidden")
