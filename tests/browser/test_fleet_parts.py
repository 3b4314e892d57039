"""The fleet view does what the cards view does beside its cards, in a real headless Chromium.

A small fleet (tests.bench.fleet_stack: 2 hosts of 4 GPUs, a real web process over a real file,
real ticks over real ZeroMQ), opened with ?view=fleet. What a user of the fleet view would
notice: the view the server paints first is the view the page shows (one threshold, the
server's); a GPU in error is in the problems strip with its host's name; a filter follows a
row's health; the server's clock, not the browser's, places the heatmap's range; a GPU purged
from the file leaves the table, and a host the file does not list yet keeps its rows; the
tables missed while the tab was hidden come when it is shown again; and every control shows the
page's one focus ring.
"""

from __future__ import annotations

import re
import sqlite3
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import msgspec
import pytest
from playwright.sync_api import Page

from tests.bench.fleet_stack import Fleet, host_name, running_fleet
from tests.browser.test_dashboard import Watch
from tests.browser.test_fleet import LOAD_TIMEOUT_MS, drawn, filtered, open_fleet

pytestmark = pytest.mark.browser

HOSTS = 2
GPUS_PER_HOST = 4
GPUS = HOSTS * GPUS_PER_HOST
FILTER_LABEL = "Filter GPUs by host, GPU, model, health or holder"
# app.css's focus ring: 3px solid #ffd43b, 2px off the control.
RING = {"style": "solid", "width": "3px", "color": "rgb(255, 212, 59)", "offset": "2px"}


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(
        tmp_path_factory.mktemp("small-fleet"), HOSTS, GPUS_PER_HOST, history_s=1800
    ) as running:
        yield running


def open_small(page: Page, fleet: Fleet) -> float:
    """Tick every host, open the fleet view, wait until each row shows that tick; return ts."""
    return open_fleet(page, fleet, "?view=fleet", GPUS)


def send_error(fleet: Fleet, number: int, index: int, error: str | None) -> float:
    """Publish host `number`'s tick with GPU `index` failing to read (error None: all well)."""
    with fleet.lock:
        ts = max(fleet.last_ts + 0.001, time.time())
        tick = fleet.tick(number, ts)
        readings = [
            msgspec.structs.replace(reading, error=error) if reading.index == index else reading
            for reading in tick.gpus
        ]
        fleet.socket.send_multipart(msgspec.structs.replace(tick, gpus=readings).to_frames())
        fleet.last_ts = ts
        return ts


def shown_rows(page: Page) -> list[str]:
    """Return "host GPU i" of each row shown, in page order."""
    return page.evaluate(
        """() => [...document.querySelectorAll(
               '#fleet-table tbody:not([hidden]) tr.fleet-gpu:not([hidden])')]
             .map((row) => row.querySelector('.fleet-c-host').textContent + ' '
                           + row.querySelector('.fleet-link').textContent)"""
    )


def uuid_of(page: Page, host: str, index: int) -> str:
    """Return the UUID of the row of `host`'s GPU `index` (whatever the rows' order)."""
    uuid = page.evaluate(
        """([host, name]) => [...document.querySelectorAll(`tr.fleet-gpu[data-host='${host}']`)]
             .find((row) => row.querySelector('.fleet-link').textContent === name)
             .dataset.gpuUuid""",
        [host, f"GPU {index}"],
    )
    assert isinstance(uuid, str) and uuid
    return uuid


def served_fleet(url: str) -> bool:
    """Return whether the page as served (its first paint, before any script) is the fleet's."""
    with urllib.request.urlopen(url, timeout=30) as response:
        html = response.read().decode()
    section = re.search(r'<section id="fleet"[^>]*>', html)
    assert section, html[:500]
    return "fleet-place" in section.group()


def test_the_server_and_the_page_choose_one_view_and_the_list_is_asked_once(
    page: Page, tmp_path: Path, watch: Watch
):
    # 2 hosts of 8: 16 GPUs, the cards' number; the file then keeps a replaced GPU as well
    # (host00's GPU 0 had another UUID before): 17 GPUs listed on 16 places.
    with running_fleet(tmp_path, 2, 8, history_s=600) as fleet:
        fleet.tick_all()
        assert not served_fleet(fleet.url + "/")
        page.goto(fleet.url + "/")
        page.wait_for_selector(".gpu-card >> nth=15", timeout=LOAD_TIMEOUT_MS)
        page.wait_for_selector("#conn-badge[data-state='live']")
        assert parse_qs(urlsplit(page.url).query)["view"] == ["cards"]
        gpu_lists = [url for url in watch.requests if urlsplit(url).path == "/api/v1/gpus"]
        assert len(gpu_lists) == 1, gpu_lists  # the cards view asks for the list once

        (db_path,) = tmp_path.glob("fleet-*.db")
        with sqlite3.connect(db_path) as conn:
            conn.execute(
                "INSERT INTO gpus (gpu_uuid, host, gpu_index, gpu_name, first_ts, last_ts)"
                " VALUES ('GPU-replaced-0000', ?, 0, 'Old GPU', 1, 2)",
                (host_name(0),),
            )
        listed = 17
        served = served_fleet(fleet.url + "/")
        page.goto(fleet.url + "/")
        if served:
            page.wait_for_selector("#fleet[data-ready='true']", timeout=LOAD_TIMEOUT_MS)
        else:
            page.wait_for_selector(".gpu-card >> nth=15", timeout=LOAD_TIMEOUT_MS)
        view = parse_qs(urlsplit(page.url).query)["view"]
        # What was painted first is what stays: no cards' places swapped for a table.
        assert view == (["fleet"] if served else ["cards"])
        assert served, f"{listed} GPUs are past the cards' 16: the fleet view, painted first"
        page.wait_for_function(
            "(n) => document.querySelectorAll('tr.fleet-gpu').length === n", arg=listed
        )
        assert page.locator(".gpu-card").count() == 0
    watch.assert_clean()


def test_a_gpu_in_error_is_a_problem_with_its_host_and_the_filter_follows_it(
    page: Page, small: Fleet, watch: Watch
):
    open_small(page, small)
    box = page.get_by_label(FILTER_LABEL)
    filtered(page, box, "error")
    assert shown_rows(page) == []
    assert page.locator("#problems-box").is_hidden()
    uuid = uuid_of(page, "host01", 2)
    try:
        ts = send_error(small, 1, 2, "GPU is lost")
        page.wait_for_function(
            "([uuid, ts]) => Number(document.querySelector("
            "`tr[data-gpu-uuid='${uuid}']`).dataset.ts) >= ts",
            arg=[uuid, ts],
        )
        drawn(page)
        # The filter (under the default sort, by host) now shows the row it matches.
        assert shown_rows(page) == ["host01 GPU 2"]
        # The problems strip says it, naming the host (the fleet has two), and leads to the row.
        item = page.locator("#problems-list li[data-kind='error']")
        item.wait_for()
        assert item.inner_text() == "host01 · GPU 2 in error"
        href = item.locator("a").get_attribute("href")
        assert page.locator(href).get_attribute("data-gpu-uuid") == uuid
        assert page.title().startswith("(1) ")
        # Well again: out of the filter, out of the strip.
        ts = send_error(small, 1, 2, None)
        page.wait_for_function("() => document.getElementById('problems-box').hidden")
        drawn(page)
        assert shown_rows(page) == []
    finally:
        send_error(small, 1, 2, None)
    watch.assert_clean()


def test_the_heatmap_range_ends_at_the_servers_now_not_the_browsers(
    page: Page, small: Fleet, watch: Watch
):
    behind_s = 7200  # this browser's clock is two hours slow
    page.add_init_script(
        f"""(() => {{
              const real = Date.now.bind(Date);
              Date.now = () => real() - {behind_s * 1000};
            }})()"""
    )
    open_small(page, small)
    ts = small.tick_all()  # a live tick: the server's clock
    page.wait_for_function(
        "(ts) => [...document.querySelectorAll('tr.fleet-gpu')]"
        ".every((row) => Number(row.dataset.ts) >= ts)",
        arg=ts,
    )
    page.locator("button[data-fleet-range='6h']").click()
    page.wait_for_function(
        "() => Number(document.getElementById('fleet-heatmap').dataset.stepS) > 0"
        " && new URLSearchParams(location.search).get('range') === '6h'"
    )
    asked = [
        parse_qs(urlsplit(url).query)
        for url in watch.requests
        if urlsplit(url).path == "/api/v1/history"
    ]
    to_s = float(asked[-1]["to"][0])
    assert float(asked[-1]["to"][0]) - float(asked[-1]["from"][0]) == 6 * 3600
    # The range ends at the server's now (one bucket up), not two hours before it.
    assert abs(to_s - ts) < 600, (to_s, ts)
    watch.assert_clean()


def test_a_purged_gpu_leaves_and_a_hidden_tab_catches_up_when_shown(
    page: Page, tmp_path: Path, watch: Watch
):
    with running_fleet(tmp_path, HOSTS, GPUS_PER_HOST, history_s=600) as fleet:
        page.clock.install()
        open_small(page, fleet)
        page.wait_for_selector("#usage-status:text('as of')", state="attached")
        page.evaluate(
            """() => {
                 Object.defineProperty(document, 'hidden', { configurable: true, get: () => true });
                 document.dispatchEvent(new Event('visibilitychange'));
               }"""
        )
        usage_before = sum(1 for url in watch.requests if "/api/v1/usage" in url)
        page.clock.run_for(61_000)  # the minute's refresh of the tables comes while hidden
        assert sum(1 for url in watch.requests if "/api/v1/usage" in url) == usage_before
        # host01's GPU 3 leaves: its sampler no longer lists it, the file no longer has it.
        gone = uuid_of(page, "host01", 3)
        with fleet.lock:
            tick = fleet.tick(1, max(fleet.last_ts + 0.001, time.time()))
            kept = [reading for reading in tick.gpus if reading.index != 3]
            fleet.socket.send_multipart(msgspec.structs.replace(tick, gpus=kept).to_frames())
            fleet.last_ts = tick.ts
        (db_path,) = tmp_path.glob("fleet-*.db")
        with sqlite3.connect(db_path) as conn:
            conn.execute("DELETE FROM gpus WHERE gpu_uuid = ?", (gone,))
        # Shown again: the tables it skipped are asked for, and the GPU list, without the GPU.
        with page.expect_request(lambda request: "/api/v1/usage" in request.url):
            page.evaluate(
                """() => {
                     Object.defineProperty(
                       document, 'hidden', { configurable: true, get: () => false });
                     document.dispatchEvent(new Event('visibilitychange'));
                   }"""
            )
        page.wait_for_function(
            "(n) => document.querySelectorAll('tr.fleet-gpu').length === n", arg=GPUS - 1
        )
        assert page.locator(f"tr[data-gpu-uuid='{gone}']").count() == 0
        head = page.locator("tr.fleet-host[data-host='host01'] .fleet-t-gpu")
        assert head.inner_text() == f"{GPUS_PER_HOST - 1} GPUs"
    watch.assert_clean()


def test_a_host_the_gpu_list_does_not_know_yet_keeps_its_rows_while_they_tick(
    page: Page, small: Fleet, watch: Watch
):
    open_small(page, small)
    # A host whose first batch the writer has not stored yet: the live feed has its ticks, the
    # GPU list (read from the file) lacks it, and another host's readings are newer.
    new_host = host_name(1)

    def without_new_host(route) -> None:
        answer = route.fetch().json()
        answer["gpus"] = [gpu for gpu in answer["gpus"] if gpu["host"] != new_host]
        route.fulfill(json=answer)

    page.route("**/api/v1/gpus*", without_new_host)
    small.tick_all()
    with page.expect_response(lambda response: "/api/v1/gpus" in response.url):
        page.evaluate(  # shown again: the fleet view asks for the GPU list at once
            """() => {
                 const hidden = (value) => {
                   const get = () => value;
                   Object.defineProperty(document, 'hidden', { configurable: true, get });
                   document.dispatchEvent(new Event('visibilitychange'));
                 };
                 hidden(true);
                 hidden(false);
               }"""
        )
    drawn(page)
    drawn(page)
    assert page.locator(f"tr.fleet-gpu[data-host='{new_host}']").count() == GPUS_PER_HOST
    assert page.locator("tr.fleet-gpu").count() == GPUS
    watch.assert_clean()


@pytest.mark.parametrize(
    "selector",
    [
        "#fleet-filter",
        "th.fleet-h-util button",
        "tr.fleet-gpu a.fleet-link >> nth=0",
        "button[data-fleet-range='6h']",
        "#view-toggle a[data-view='cards']",
    ],
)
def test_every_fleet_control_shows_the_pages_focus_ring(
    page: Page, small: Fleet, watch: Watch, selector: str
):
    open_small(page, small)
    target = page.locator(selector)
    target.focus()
    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Tab")  # reached from the keyboard: :focus-visible
    ring = page.evaluate(
        """(target) => {
             const style = getComputedStyle(document.activeElement);
             return { same: document.activeElement === target, style: style.outlineStyle,
                      width: style.outlineWidth, color: style.outlineColor,
                      offset: style.outlineOffset };
           }""",
        target.element_handle(),
    )
    assert ring.pop("same"), f"Tab did not come back to {selector}"
    assert ring == RING, selector
    watch.assert_clean()
