"""No jump on load: the first paint already has the cards' places, so nothing under them moves.

Against the real stack on 4 simulated GPUs, in Debian's Chromium, at a wall screen's and a
phone's width. The layout shift is Chromium's own measure (the Layout Instability API, what
Lighthouse's CLS adds up), read from the page after its cards are in.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

GPU_COUNT = 4
CLS_LIMIT = 0.05  # Lighthouse's "good" is < 0.1; the issue asks for half that
VIEWPORTS = {"desktop": {"width": 1400, "height": 900}, "phone": {"width": 390, "height": 844}}
LAYOUT_SHIFT_JS = """() => new Promise((resolve) => {
  let total = 0;
  new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) if (!entry.hadRecentInput) total += entry.value;
  }).observe({ type: 'layout-shift', buffered: true });
  setTimeout(() => resolve(total), 200);
})"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"PCW_SIM_GPUS": str(GPU_COUNT), "PCW_INTERVAL_S": "1"}
    with running_stack(tmp_path_factory.mktemp("no-jump"), env, ticks=3) as running:
        yield running


@pytest.mark.parametrize("width", sorted(VIEWPORTS))
def test_the_first_paint_has_a_place_for_each_card(browser: Browser, stack: Stack, width: str):
    # what the browser paints before any script has run
    context = browser.new_context(viewport=VIEWPORTS[width], java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/")
        places = page.locator(".skeleton-card")
        assert places.count() == GPU_COUNT
        assert all(box["height"] >= 300 for box in (p.bounding_box() for p in places.all()))
        assert "GPU 3" in places.nth(3).inner_text()
        # what comes after the cards starts below the first screen, where a shift is not seen
        history = page.locator("#history-title").bounding_box()
        assert history is not None and history["y"] > VIEWPORTS[width]["height"]
    finally:
        context.close()


@pytest.mark.parametrize("width", sorted(VIEWPORTS))
def test_the_cards_come_in_without_moving_the_page(browser: Browser, stack: Stack, width: str):
    context = browser.new_context(viewport=VIEWPORTS[width])
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/")
        page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
        page.wait_for_selector("#conn-badge[data-state='live']")
        time.sleep(1.5)  # a tick or two more, with their redraws
        assert page.locator("#no-gpus").is_hidden()  # the places gave way to the cards
        shift = page.evaluate(LAYOUT_SHIFT_JS)
        assert shift < CLS_LIMIT, f"layout shift {shift:.3f} at {width} width"
    finally:
        context.close()


def test_the_page_of_one_host_has_the_places_of_its_gpus_only(browser: Browser, stack: Stack):
    context = browser.new_context(viewport=VIEWPORTS["desktop"], java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/?host=no-such-host")
        assert page.locator(".skeleton-card").count() == 0
        assert "Waiting for the first reading" in page.locator("#no-gpus").inner_text()
    finally:
        context.close()


def test_nothing_is_left_over_from_the_places_after_load(browser: Browser, stack: Stack):
    context = browser.new_context(viewport=VIEWPORTS["desktop"])
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/")
        page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
        assert page.locator(".gpu-card").count() == GPU_COUNT  # no place counts as a card
        assert not [p for p in page.locator(".skeleton-card").all() if p.is_visible()]
    finally:
        context.close()


# Every element's computed style under the page's stylesheets, keyed by its place in the DOM
COMPUTED_STYLES_JS = """() => {
  const properties = ['display', 'position', 'margin', 'padding', 'border', 'width', 'height',
    'color', 'background-color', 'font-size', 'font-weight', 'flex-direction', 'gap',
    'visibility', 'overflow', 'text-align', 'white-space', 'opacity', 'outline-style'];
  const styles = {};
  document.querySelectorAll('body *').forEach((node, position) => {
    const computed = getComputedStyle(node);
    styles[`${position} ${node.tagName} ${node.className}`] =
      properties.map((name) => computed.getPropertyValue(name)).join('|');
  });
  return styles;
}"""
SWAP_CSS_JS = """(href) => new Promise((resolve) => {
  const link = document.querySelector('link[href*="bootstrap"]');
  link.addEventListener('load', () => requestAnimationFrame(() => resolve(true)), { once: true });
  link.addEventListener('error', () => resolve(false), { once: true });
  link.href = href;
})"""


@pytest.mark.parametrize("width", sorted(VIEWPORTS))
def test_the_purged_bootstrap_styles_the_page_as_the_whole_one(
    browser: Browser, stack: Stack, width: str
):
    context = browser.new_context(viewport=VIEWPORTS[width])
    try:
        page = context.new_page()
        page.goto(f"{stack.web_url}/")
        page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
        page.wait_for_selector("#conn-badge[data-state='live']")
        time.sleep(1.5)
        purged = page.evaluate(COMPUTED_STYLES_JS)
        assert page.evaluate(SWAP_CSS_JS, "/static/vendor/bootstrap/bootstrap.min.css")
        whole = page.evaluate(COMPUTED_STYLES_JS)
        assert page.evaluate(SWAP_CSS_JS, "/static/dist/bootstrap.css")
        again = page.evaluate(COMPUTED_STYLES_JS)
        # what a tick changed meanwhile (a bar's width, a value's colour) is not the CSS's doing
        steady = {key: style for key, style in purged.items() if again.get(key) == style}
        assert len(steady) > 300
        differ = [(key, style, whole.get(key)) for key, style in steady.items()]
        differ = [item for item in differ if item[1] != item[2]]
        assert not differ, differ[:5]
    finally:
        context.close()
