"""The history charts on a phone's screen (js/charts.js).

On a phone the four charts are screens below the cards, and a chart off the screen is not
redrawn at each tick (those redraws were most of the page's main-thread time). These tests check
what a phone user gets: every chart has every GPU's line without being scrolled to, a chart
scrolled to shows the newest readings, its table lists the same buckets, and its legend buttons
switch its lines. Against a real stack of 3 simulated GPUs at 1 s, in Debian's Chromium.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page

from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

GPU_COUNT = 3
CHART_IDS = ("chart-util", "chart-temp", "chart-mem", "chart-power")
PHONE = {"width": 390, "height": 844}

# Whether every chart is built, drawn with its points, and has a line per GPU with a reading.
ALL_DRAWN_JS = """([ids, count]) => ids.every((id) => {
  const chart = window.Chart && Chart.getChart(id);
  return chart && chart.data.datasets.length === count
    && chart.data.datasets.every((d) => d.data.some((p) => p.y !== null));
})"""
# The newest point's time in a chart's lines, and the right end of its drawn time axis (ms).
NEWEST_JS = """(id) => {
  const chart = Chart.getChart(id);
  const newest = Math.max(...chart.data.datasets.map((d) => d.data.at(-1)?.x ?? 0));
  return { newest, axisMax: chart.scales.x.max };
}"""


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {"PCW_SIM_GPUS": str(GPU_COUNT), "PCW_INTERVAL_S": "1"}
    with running_stack(tmp_path_factory.mktemp("chart-tasks"), env, ticks=3) as running:
        yield running


@pytest.fixture
def viewport() -> dict[str, int]:
    return PHONE


def open_phone_page(page: Page, stack: Stack) -> None:
    page.goto(f"{stack.web_url}/")
    page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
    page.wait_for_selector("#conn-badge[data-state='live']")


def test_every_chart_has_its_lines_without_being_scrolled_to(page: Page, stack: Stack):
    open_phone_page(page, stack)
    power = page.locator("#chart-power").bounding_box()
    assert power is not None and power["y"] > PHONE["height"]  # the charts are below the screen
    page.wait_for_function(ALL_DRAWN_JS, arg=[list(CHART_IDS), GPU_COUNT])
    assert page.evaluate("() => window.scrollY") == 0


def test_a_chart_scrolled_to_shows_the_newest_readings(page: Page, stack: Stack):
    open_phone_page(page, stack)
    page.wait_for_function(ALL_DRAWN_JS, arg=[list(CHART_IDS), GPU_COUNT])
    # Ticks come in while the chart is off the screen: a new bucket (some seconds wide on a
    # phone's width) is added to its points, and its drawing waits.
    before = page.evaluate(NEWEST_JS, "chart-power")
    page.wait_for_function(
        "([id, newest]) => (" + NEWEST_JS + ")(id).newest > newest",
        arg=["chart-power", before["newest"]],
        timeout=60_000,
    )
    waiting = page.evaluate(NEWEST_JS, "chart-power")
    assert waiting["axisMax"] < waiting["newest"], waiting  # not redrawn off the screen
    page.locator("#chart-power").scroll_into_view_if_needed()
    # Drawn once in view: its axis reaches the newest point it holds.
    page.wait_for_function(
        "(id) => { const n = (" + NEWEST_JS + ")(id); return n.axisMax >= n.newest; }",
        arg="chart-power",
        timeout=5_000,
    )


def test_a_chart_table_and_the_legend_buttons_work_on_a_phone(page: Page, stack: Stack):
    open_phone_page(page, stack)
    toggle = page.locator("button.chart-table-toggle[data-chart='chart-temp']")
    toggle.scroll_into_view_if_needed()
    toggle.click()
    assert toggle.get_attribute("aria-expanded") == "true"
    table = page.locator("#chart-temp-table-box table")
    table.wait_for()
    heads = table.locator("thead th").all_inner_texts()
    assert heads[0] == "Time" and len(heads) == 1 + GPU_COUNT, heads
    assert table.locator("tbody tr").count() > 0
    assert "°C" in table.locator("tbody td").first.inner_text()

    page.wait_for_function(ALL_DRAWN_JS, arg=[list(CHART_IDS), GPU_COUNT])
    button = page.locator("#gpu-toggles button").first
    button.scroll_into_view_if_needed()
    button.click()
    assert button.get_attribute("aria-pressed") == "false"
    # The line is off in every chart, the ones built off the screen too, and out of the table.
    page.wait_for_function(
        "(ids) => ids.every((id) => !Chart.getChart(id).isDatasetVisible(0))", arg=list(CHART_IDS)
    )
    page.wait_for_function(
        "(n) => document.querySelectorAll('#chart-temp-table-box thead th').length === n",
        arg=GPU_COUNT,
        timeout=10_000,
    )
    button.click()
    assert button.get_attribute("aria-pressed") == "true"
    page.wait_for_function(
        "(ids) => ids.every((id) => Chart.getChart(id).isDatasetVisible(0))", arg=list(CHART_IDS)
    )
