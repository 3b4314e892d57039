"""Basic auth in a real headless Chromium: signed in, the live dashboard; without, a 401.

Also the Content-Security-Policy in practice: the page reports no violation of it.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser, Response
from playwright.sync_api import Error as PlaywrightError

from services.web.auth import hash_password
from tests.browser.test_dashboard import (
    GPU_COUNT,
    VIEWPORT,
    Watch,
    open_dashboard,
)
from tests.stack import Stack

pytestmark = pytest.mark.browser

USER = "ops"
PASSWORD = "gpus are warm tonight"
# Every violation of the page's Content-Security-Policy, as the browser reports it to the page.
RECORD_VIOLATIONS_JS = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation',
  (e) => window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`));
"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    folder = tmp_path_factory.mktemp("login")
    users = folder / "users.txt"
    users.write_text(f"{USER}:{hash_password(PASSWORD)}\n")
    env = {"PCW_SIM_GPUS": str(GPU_COUNT), "PCW_INTERVAL_S": "1", "PCW_AUTH_FILE": str(users)}
    with Stack(folder, env, supervised=False) as running:
        running.wait_web()
        running.wait_ticks(3)
        yield running


def test_signed_in_the_dashboard_draws_and_ticks_live_within_its_policy(
    browser: Browser, stack: Stack
) -> None:
    context = browser.new_context(
        viewport=VIEWPORT, http_credentials={"username": USER, "password": PASSWORD}
    )
    context.add_init_script(RECORD_VIOLATIONS_JS)
    page = context.new_page()
    watch = Watch()
    watch.attach(page)
    csp_messages: list[str] = []
    page.on(
        "console",
        lambda message: (
            csp_messages.append(message.text)
            if "Content Security Policy" in message.text
            or "Content-Security-Policy" in message.text
            else None
        ),
    )
    try:
        open_dashboard(page, stack)  # cards, history charts and the live badge
        card = page.locator(".gpu-card").first
        seen_ts = card.get_attribute("data-ts")
        page.wait_for_function(
            "(ts) => document.querySelector('.gpu-card').dataset.ts !== ts", arg=seen_ts
        )
        assert float(card.get_attribute("data-ts") or 0) > float(seen_ts or 0)
        assert page.evaluate("window.__cspViolations") == []
        assert csp_messages == []
        watch.assert_clean()
        watch.assert_only_host(stack.web_url)
    finally:
        context.close()


def refused_navigation(browser: Browser, stack: Stack, credentials: dict | None) -> list[Response]:
    """Open the page; return the responses seen, after checking that no dashboard showed."""
    context = browser.new_context(viewport=VIEWPORT, http_credentials=credentials)
    page = context.new_page()
    responses: list[Response] = []
    page.on("response", lambda response: responses.append(response))
    try:
        try:
            # Headless Chromium cannot ask for a password: the navigation ends in an error page.
            page.goto(stack.web_url + "/")
        except PlaywrightError as error:
            assert "ERR_INVALID_AUTH_CREDENTIALS" in str(error)
        assert page.locator(".gpu-card").count() == 0
    finally:
        context.close()
    return responses


def test_without_credentials_the_browser_gets_401(browser: Browser, stack: Stack) -> None:
    responses = refused_navigation(browser, stack, None)
    assert [r.status for r in responses] == [401]
    assert responses[0].headers["www-authenticate"].startswith('Basic realm="pyCudaWatch"')


def test_a_wrong_password_gets_401(browser: Browser, stack: Stack) -> None:
    responses = refused_navigation(browser, stack, {"username": USER, "password": "guess"})
    assert responses and {r.status for r in responses} == {401}
