"""The fleet view: 256 simulated GPUs on 32 hosts, in a real headless Chromium.

The fleet (tests.bench.fleet_stack): an hour of history written through the writer's own storage
code, one real web process over it, and every host's ticks sent from one real ZeroMQ publisher,
each tick a real Tick with its own host name. The page picks the fleet view by itself and keeps
it in the URL; rows are grouped by host with totals that match the API; sorting, filtering, the
heatmap, opening a GPU's page (click, Enter) and a live tick all work as a user would see.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from common.messages import GpuProcess
from tests.bench.fleet_stack import Fleet, host_name, running_fleet
from tests.browser.test_a11y import assert_accessible
from tests.browser.test_dashboard import Watch

pytestmark = pytest.mark.browser

HOSTS = 32
GPUS_PER_HOST = 8
GPUS = HOSTS * GPUS_PER_HOST
VIEWPORT = {"width": 1400, "height": 1000}
LOAD_TIMEOUT_MS = 60_000
GIB = 1024**3


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("fleet"), HOSTS, GPUS_PER_HOST) as running:
        yield running


@pytest.fixture
def viewport() -> dict[str, int]:
    return VIEWPORT


def api(fleet: Fleet, path: str) -> dict:
    with urllib.request.urlopen(fleet.url + path, timeout=30) as response:
        return json.loads(response.read())


def open_fleet(page: Page, fleet: Fleet, query: str = "", count: int = GPUS) -> float:
    """Tick every host, open the page, wait until every row (`count` of them) shows that tick;
    return its ts."""
    ts = fleet.tick_all()
    page.goto(f"{fleet.url}/{query}")
    page.wait_for_selector("#fleet[data-ready='true']", timeout=LOAD_TIMEOUT_MS)
    page.wait_for_selector("#conn-badge[data-state='live']")
    wait_rows_at(page, ts, count)
    return ts


def wait_rows_at(page: Page, ts: float, count: int = GPUS) -> None:
    """Wait until every GPU's row (`count` of them) shows a reading at least as new as ts."""
    page.wait_for_function(
        """([count, ts]) => {
             const rows = document.querySelectorAll('tr.fleet-gpu');
             return rows.length === count && [...rows].every((row) => Number(row.dataset.ts) >= ts);
           }""",
        arg=[count, ts],
        timeout=LOAD_TIMEOUT_MS,
    )


def number(text: str) -> float:
    """Return the first number in a cell's text ("2,130 / 3,800 W" -> 2130)."""
    found = re.search(r"-?[\d,]+(?:\.\d+)?", text)
    assert found, text
    return float(found.group().replace(",", ""))


def filtered(page: Page, box, text: str) -> None:
    """Type text into the filter box; wait until the page has taken it (it is in the URL) and
    drawn the rows (in the next frame after that)."""
    box.fill(text)
    page.wait_for_function(
        "(text) => (new URLSearchParams(location.search).get('q') || '') === text",
        arg=text.strip().lower(),
    )
    drawn(page)


def drawn(page: Page) -> None:
    """Wait two frames: what the page queued for its next frame (a sort, a filter) is drawn."""
    page.evaluate(
        "() => new Promise((done) => requestAnimationFrame(() => requestAnimationFrame(done)))"
    )


def visible_rows(page: Page) -> list[dict]:
    """Return the rows shown, in page order: host, index, util (None: n/a), group host."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
               '#fleet-table tbody:not([hidden]) tr.fleet-gpu:not([hidden])')]
             .map((row) => ({
               uuid: row.dataset.gpuUuid,
               host: row.querySelector('.fleet-c-host').textContent,
               group: row.closest('tbody').dataset.host,
               index: Number(row.querySelector('.fleet-link').textContent.replace('GPU ', '')),
               model: row.querySelector('.fleet-c-model').textContent,
               util: row.querySelector('.fleet-c-util').textContent,
               temp: row.querySelector('.fleet-c-temp').textContent,
               holders: row.querySelector('.fleet-c-holders').textContent,
             }))"""
    )


def test_the_fleet_view_is_chosen_by_itself_and_kept_in_the_url(
    page: Page, fleet: Fleet, watch: Watch
):
    open_fleet(page, fleet)
    assert parse_qs(urlsplit(page.url).query)["view"] == ["fleet"]
    assert page.locator("#gpu-cards").is_hidden()
    assert page.locator(".gpu-card").count() == 0  # the cards' machinery never started
    assert page.locator("tr.fleet-gpu").count() == GPUS
    current = page.locator("#view-toggle a[aria-current='page']")
    assert current.inner_text() == "Fleet"
    # the page's link to the charts leads to the fleet's table and range instead, not nowhere
    assert page.locator(".page-nav a[href='#history']").count() == 0
    assert page.locator(".page-nav a[href='#fleet']").inner_text() == "Fleet and time range"
    # The toggle switches to the cards, and the URL keeps that choice over a reload.
    page.locator("#view-toggle a[data-view='cards']").click()
    page.wait_for_selector(".gpu-card", state="attached", timeout=LOAD_TIMEOUT_MS)
    assert parse_qs(urlsplit(page.url).query)["view"] == ["cards"]
    assert page.locator("#fleet").is_hidden()
    page.reload()
    page.wait_for_selector(".gpu-card", state="attached", timeout=LOAD_TIMEOUT_MS)
    assert page.locator("tr.fleet-gpu").count() == 0
    page.locator("#view-toggle a[data-view='fleet']").click()
    page.wait_for_selector("#fleet[data-ready='true']", timeout=LOAD_TIMEOUT_MS)
    assert parse_qs(urlsplit(page.url).query)["view"] == ["fleet"]
    watch.assert_clean()
    watch.assert_only_host(fleet.url)


def test_rows_are_grouped_by_host_with_totals_that_match_the_api(
    page: Page, fleet: Fleet, watch: Watch
):
    open_fleet(page, fleet)
    gpus = api(fleet, "/api/v1/gpus")["gpus"]
    assert len(gpus) == GPUS
    groups = page.evaluate(
        """() => [...document.querySelectorAll('#fleet-table tbody')].map((body) => {
             const head = body.querySelector('tr.fleet-host');
             const cell = (name) => head.querySelector('.fleet-t-' + name).textContent;
             return {
               host: body.dataset.host,
               name: head.querySelector('th').textContent,
               hosts: [...body.querySelectorAll('tr.fleet-gpu .fleet-c-host')]
                 .map((c) => c.textContent),
               gpus: cell('gpu'), util: cell('util'), mem: cell('mem'), power: cell('power'),
               temp: cell('temp'),
             };
           })"""
    )
    assert [group["host"] for group in groups] == [host_name(n) for n in range(HOSTS)]
    for group in groups:
        host = group["host"]
        mine = [gpu["latest"] for gpu in gpus if gpu["host"] == host]
        assert group["name"] == host
        assert group["hosts"] == [host] * GPUS_PER_HOST
        assert group["gpus"] == f"{GPUS_PER_HOST} GPUs"
        util_mean = sum(item["util_gpu_pct"] for item in mine) / len(mine)
        assert number(group["util"]) == pytest.approx(util_mean, abs=0.5), host
        used_gib = sum(item["mem_used_bytes"] for item in mine) / GIB
        total_gib = sum(item["mem_total_bytes"] for item in mine) / GIB
        used_text, total_text = group["mem"].split(" / ")
        assert number(used_text) == pytest.approx(used_gib, abs=0.05), host
        assert number(total_text) == pytest.approx(total_gib, abs=0.5), host
        power = sum(item["power_w"] for item in mine)
        limit = sum(item["power_limit_w"] for item in mine)
        power_text, limit_text = group["power"].split(" / ")
        assert number(power_text) == pytest.approx(power, abs=0.5), host
        assert number(limit_text) == pytest.approx(limit, abs=0.5), host
        assert number(group["temp"]) == max(item["temp_c"] for item in mine), host
    watch.assert_clean()


def test_a_heading_button_sorts_and_says_so(page: Page, fleet: Fleet, watch: Watch):
    open_fleet(page, fleet)
    util_head = page.locator("th.fleet-h-util")
    assert util_head.get_attribute("aria-sort") is None
    assert page.locator("th.fleet-h-host").get_attribute("aria-sort") == "ascending"
    util_head.get_by_role("button").click()
    drawn(page)
    assert util_head.get_attribute("aria-sort") == "descending"
    assert page.locator("th.fleet-h-host").get_attribute("aria-sort") is None
    rows = visible_rows(page)
    by_host: dict[str, list[float]] = {}
    for row in rows:
        by_host.setdefault(row["group"], []).append(number(row["util"]))
    for host, utils in by_host.items():
        assert utils == sorted(utils, reverse=True), host  # within each host, busiest first
    means = [sum(utils) / len(utils) for utils in by_host.values()]
    assert means == sorted(means, reverse=True)  # and the busiest hosts first
    util_head.get_by_role("button").click()
    drawn(page)
    assert util_head.get_attribute("aria-sort") == "ascending"
    first_group = visible_rows(page)[:GPUS_PER_HOST]
    utils = [number(row["util"]) for row in first_group]
    assert utils == sorted(utils)
    # From the keyboard: Tab reaches the buttons, Enter sorts.
    page.locator("th.fleet-h-temp button").focus()
    page.keyboard.press("Enter")
    drawn(page)
    assert page.locator("th.fleet-h-temp").get_attribute("aria-sort") == "descending"
    temps = [number(row["temp"]) for row in visible_rows(page)[:GPUS_PER_HOST]]
    assert temps == sorted(temps, reverse=True)
    watch.assert_clean()


def test_the_filter_keeps_the_matching_rows_and_is_in_the_url(
    page: Page, fleet: Fleet, watch: Watch
):
    open_fleet(page, fleet)
    box = page.get_by_label("Filter GPUs by host, GPU, model, health or holder")
    filtered(page, box, "host07")
    rows = visible_rows(page)
    assert len(rows) == GPUS_PER_HOST and {row["host"] for row in rows} == {"host07"}
    assert page.locator("tr.fleet-host[data-host='host07'] .fleet-t-gpu").inner_text() == "8 GPUs"
    model = rows[0]["model"]
    filtered(page, box, model)
    rows = visible_rows(page)
    expected = [gpu for gpu in api(fleet, "/api/v1/gpus")["gpus"] if gpu["gpu_name"] == model]
    assert len(rows) == len(expected) and {row["model"] for row in rows} == {model}
    # A host's totals are over the rows shown, and say so.
    shown = sum(1 for row in rows if row["host"] == "host00")
    assert page.locator("tr.fleet-host[data-host='host00'] .fleet-t-gpu").inner_text() == (
        f"{shown} of {GPUS_PER_HOST} GPUs"
    )
    filtered(page, box, "no such gpu anywhere")
    assert visible_rows(page) == []
    assert page.locator(".fleet-empty").is_visible()
    filtered(page, box, "")
    assert len(visible_rows(page)) == GPUS
    # The filter in the URL is the filter of a page opened from it.
    open_fleet(page, fleet, "?view=fleet&q=host31")
    assert {row["host"] for row in visible_rows(page)} == {"host31"}
    watch.assert_clean()


def test_the_heatmap_draws_every_gpu_over_the_range(page: Page, fleet: Fleet, watch: Watch):
    open_fleet(page, fleet)
    page.wait_for_selector("#fleet-heatmap[data-buckets]", state="attached")
    drawn = page.evaluate(
        """() => {
             const canvas = document.getElementById('fleet-heatmap');
             const data = canvas.getContext('2d')
               .getImageData(0, 0, canvas.width, canvas.height).data;
             const colours = new Set();
             let gap = 0;
             for (let at = 0; at < data.length; at += 4) {
               const rgb = `${data[at]},${data[at + 1]},${data[at + 2]}`;
               if (rgb === '73,80,87') gap += 1;
               colours.add(rgb);
             }
             return { gpus: Number(canvas.dataset.gpus), width: canvas.width, height: canvas.height,
                      pixels: data.length / 4, gap, colours: colours.size,
                      shownHeight: canvas.getBoundingClientRect().height };
           }"""
    )
    assert drawn["gpus"] == GPUS
    assert drawn["height"] == GPUS + HOSTS - 1  # a line per GPU, a gap line between hosts
    assert drawn["width"] > 100  # an hour of 10 s readings: hundreds of buckets
    assert drawn["gap"] < drawn["pixels"] * 0.2  # the history is there, not "no reading"
    assert drawn["colours"] > 20  # utilization varies, and so does the colour
    assert drawn["shownHeight"] > 300
    # Another range asks for its history and draws it in other buckets.
    step_1h = int(page.locator("#fleet-heatmap").get_attribute("data-step-s"))
    page.locator("button[data-fleet-range='6h']").click()
    page.wait_for_function(
        "(step) => Number(document.getElementById('fleet-heatmap').dataset.stepS) > step",
        arg=step_1h,
    )
    assert parse_qs(urlsplit(page.url).query)["range"] == ["6h"]
    assert page.locator("button[data-fleet-range='6h']").get_attribute("aria-pressed") == "true"
    history = [url for url in watch.requests if urlsplit(url).path == "/api/v1/history"]
    queries = [parse_qs(urlsplit(url).query) for url in history]
    spans = [float(query["to"][0]) - float(query["from"][0]) for query in queries]
    assert spans[0] == 3600 and spans[-1] == 6 * 3600
    watch.assert_clean()


def test_a_click_or_enter_opens_the_gpu_page(page: Page, fleet: Fleet, watch: Watch):
    open_fleet(page, fleet)
    row = page.locator("tr.fleet-gpu[data-host='host03']").nth(2)
    uuid = row.get_attribute("data-gpu-uuid")
    row.locator(".fleet-c-model").click()  # anywhere on the row, not only its link
    page.wait_for_url(f"**/gpu/{uuid}")
    page.wait_for_selector("h1")
    assert "host03" in page.content()
    open_fleet(page, fleet)
    row = page.locator("tr.fleet-gpu[data-host='host12']").nth(5)
    uuid = row.get_attribute("data-gpu-uuid")
    link = row.locator("a.fleet-link")
    link.focus()
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/gpu/{uuid}")
    watch.assert_clean()


def test_a_live_tick_changes_the_row_its_host_totals_and_the_heatmap(
    page: Page, fleet: Fleet, watch: Watch
):
    open_fleet(page, fleet)
    page.wait_for_selector("#fleet-heatmap[data-buckets]", state="attached")
    row = page.locator("tr.fleet-gpu[data-host='host05']").nth(3)
    before_draws = int(page.locator("#fleet-heatmap").get_attribute("data-drawn"))
    fleet.util_pct[(5, 3)] = 77 if number(row.locator(".fleet-c-util").inner_text()) != 77 else 78
    fleet.holders[(5, 3)] = [
        GpuProcess(pid=4242, used_mem_bytes=GIB, visible=True, name="train.py", user="alice")
    ]
    ts = fleet.send_host(5)
    page.wait_for_function(
        "([row, ts]) => Number(document.querySelector(row).dataset.ts) >= ts",
        arg=[f"tr[data-gpu-uuid='{row.get_attribute('data-gpu-uuid')}']", ts],
    )
    wanted = fleet.util_pct[(5, 3)]
    assert row.locator(".fleet-c-util").inner_text() == f"{wanted} %"
    assert row.locator(".fleet-c-holders").inner_text() == "alice"
    gpus = [gpu for gpu in api(fleet, "/api/v1/gpus")["gpus"] if gpu["host"] == "host05"]
    mean = sum(gpu["latest"]["util_gpu_pct"] for gpu in gpus) / len(gpus)
    head = page.locator("tr.fleet-host[data-host='host05']")
    assert float(head.get_attribute("data-util-mean")) == pytest.approx(mean)
    assert head.locator(".fleet-t-holders").inner_text() == "1 holder"
    assert int(page.locator("#fleet-heatmap").get_attribute("data-drawn")) > before_draws
    # The holder's name is found by the filter.
    filtered(page, page.get_by_label("Filter GPUs by host, GPU, model, health or holder"), "alice")
    rows = visible_rows(page)
    assert [(row["host"], row["index"]) for row in rows] == [("host05", 3)]
    fleet.util_pct.clear()
    fleet.holders.clear()
    watch.assert_clean()


def test_a_fleet_of_few_gpus_opens_in_cards_unless_the_url_says_fleet(
    page: Page, tmp_path: Path, watch: Watch
):
    with running_fleet(tmp_path, 2, 4, history_s=600) as small:  # 8 GPUs
        small.tick_all()
        page.goto(small.url + "/")
        page.wait_for_selector(".gpu-card >> nth=7", timeout=LOAD_TIMEOUT_MS)
        assert parse_qs(urlsplit(page.url).query)["view"] == ["cards"]
        assert page.locator("#fleet").is_hidden()
        page.goto(small.url + "/?view=fleet")
        page.wait_for_selector("#fleet[data-ready='true']", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_function("() => document.querySelectorAll('tr.fleet-gpu').length === 8")
        assert page.locator(".gpu-card").count() == 0
    watch.assert_clean()


@pytest.mark.parametrize("width_px", [390, 1920])
def test_the_fleet_view_breaks_no_accessibility_rule(
    browser: Browser, fleet: Fleet, watch: Watch, width_px: int
):
    # axe-core as tests/browser/test_a11y.py runs it, on the fleet view with a filter and a sort
    context = browser.new_context(bypass_csp=True, viewport={"width": width_px, "height": 1080})
    page = context.new_page()
    watch.attach(page)
    try:
        open_fleet(page, fleet)
        page.wait_for_selector("#fleet-heatmap[data-buckets]", state="attached")
        page.locator("th.fleet-h-power button").click()
        filtered(
            page, page.get_by_label("Filter GPUs by host, GPU, model, health or holder"), "host0"
        )
        assert_accessible(page, f"fleet view at {width_px} px")
    finally:
        context.close()
    watch.assert_clean()
