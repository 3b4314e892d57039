"""The dashboard in a real headless Chromium, against the real stack on 3 simulated GPUs at 1 s.

Debian's Chromium (/usr/bin/chromium) is driven through Playwright; no browser is downloaded.
Chart.getChart(canvas id) is Chart.js's own public look-up, so the tests read what the charts
draw without any test hook in the page.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import (
    Browser,
    ConsoleMessage,
    Dialog,
    Page,
    Playwright,
    WebSocketRoute,
    sync_playwright,
)

from tests.stack import Stack, running_stack, wait_until

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
HOSTILE_NAME = "<img src=x onerror=alert(1)>"
CHART_IDS = ("chart-util", "chart-temp", "chart-mem", "chart-power")
SCREENSHOT = REPO / "test-artifacts" / "dashboard.png"
VIEWPORT = {"width": 1400, "height": 900}
GPU_COUNT = 3
METRICS = (
    "util_gpu_pct",
    "util_mem_pct",
    "mem_used_bytes",
    "mem_total_bytes",
    "temp_c",
    "power_w",
    "power_limit_w",
    "energy_j",
    "fan_pct",
    "sm_clock_mhz",
    "mem_clock_mhz",
    "pstate",
)
DAY_S = 86400

# Per dataset of every chart: [point count, newest x, its y, readings merged into it].
CHART_SIGNATURE_JS = (
    "() => "
    + json.dumps(CHART_IDS)
    + """.map((id) => Chart.getChart(id).data.datasets.map((d) => {
  const last = d.data[d.data.length - 1] || {};
  return [d.data.length, last.x ?? null, last.y ?? null, last.n ?? null];
}))"""
)


@dataclass
class Watch:
    """Everything one page did that a test may want to check afterwards."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requests: list[str] = field(default_factory=list)
    websockets: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> None:
        """Record the page's console errors, uncaught errors, dialogs, requests and websockets."""
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.page_errors.append(str(error)))
        page.on("dialog", self._dialog)
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("websocket", lambda socket: self.websockets.append(socket.url))

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.console_errors.append(f"{message.text} ({message.location})")

    def _dialog(self, dialog: Dialog) -> None:
        self.dialogs.append(f"{dialog.type}: {dialog.message}")
        dialog.dismiss()

    def history_requests(self) -> list[dict[str, list[str]]]:
        """Return the query of every /api/v1/history request so far, oldest first."""
        return [
            parse_qs(urlsplit(url).query)
            for url in self.requests
            if urlsplit(url).path == "/api/v1/history"
        ]

    def assert_clean(self) -> None:
        """Fail on any console error, uncaught exception or dialog."""
        assert self.console_errors == [], self.console_errors
        assert self.page_errors == [], self.page_errors
        assert self.dialogs == [], self.dialogs

    def assert_only_host(self, web_url: str) -> None:
        """Fail when the page asked any other host than the stack's (data: and blob: aside)."""
        origin = urlsplit(web_url).netloc
        assert self.requests, "the page made no request at all"
        for url in self.requests + self.websockets:
            parts = urlsplit(url)
            if parts.scheme in ("data", "blob"):
                continue
            assert parts.scheme in ("http", "ws") and parts.netloc == origin, url


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PCW_SIM_GPUS": str(GPU_COUNT),
        "PCW_INTERVAL_S": "1",
        "PCW_SIM_NAMES": HOSTILE_NAME,
    }
    with running_stack(tmp_path_factory.mktemp("stack"), env, ticks=3) as running:
        yield running


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as driver:
        yield driver


@pytest.fixture(scope="module")
def browser(playwright: Playwright) -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: install Debian's chromium package (apt-get install chromium)."
            " These tests drive the system's Chromium and never download a browser."
        )
    launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
    yield launched
    launched.close()


@pytest.fixture
def watch() -> Watch:
    return Watch()


@pytest.fixture
def viewport() -> dict[str, int]:
    """The page's size; a module that needs another defines its own `viewport` fixture."""
    return VIEWPORT


@pytest.fixture
def page(browser: Browser, watch: Watch, viewport: dict[str, int]) -> Iterator[Page]:
    context = browser.new_context(viewport=viewport)
    opened = context.new_page()
    watch.attach(opened)
    yield opened
    context.close()


def open_dashboard(page: Page, stack: Stack, query: str = "") -> None:
    """Open the page and wait until its cards, history and live feed are all in."""
    page.goto(f"{stack.web_url}/{query}")
    page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
    page.wait_for_selector("#conn-badge[data-state='live']")
    # Loaded: every chart has a line per GPU with at least one drawn (non-null) point.
    page.wait_for_function(
        """([ids, count]) => ids.every((id) => {
             const chart = window.Chart && Chart.getChart(id);
             return chart && chart.data.datasets.length === count
               && chart.data.datasets.every((d) => d.data.some((p) => p.y !== null));
           })""",
        arg=[list(CHART_IDS), GPU_COUNT],
    )


def test_page_shows_every_gpu_and_chart_without_errors(page: Page, stack: Stack, watch: Watch):
    open_dashboard(page, stack)

    cards = page.locator(".gpu-card")
    assert cards.count() == GPU_COUNT
    uuids = {cards.nth(i).get_attribute("data-gpu-uuid") for i in range(GPU_COUNT)}
    stored = {row[0] for row in stack.query("SELECT DISTINCT gpu_uuid FROM readings")}
    assert uuids == stored
    for i in range(GPU_COUNT):
        util = cards.nth(i).locator(".metric-util").inner_text()
        assert util.endswith("%"), util
    for chart_id in CHART_IDS:
        canvas = page.locator(f"canvas#{chart_id}")
        assert canvas.is_visible()
        box = canvas.bounding_box()
        assert box and box["width"] > 300 and box["height"] > 150, (chart_id, box)
    assert page.locator("#sim-banner").is_visible()
    assert "Simulated GPUs — demo data" in page.locator("#sim-banner").inner_text()

    page.wait_for_timeout(1500)  # a tick or two drawn live, for the picture
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOT))
    assert SCREENSHOT.stat().st_size > 10_000
    watch.assert_clean()
    watch.assert_only_host(stack.web_url)


def test_a_new_tick_changes_the_page_within_2_s(page: Page, stack: Stack, watch: Watch):
    open_dashboard(page, stack)
    card = page.locator(".gpu-card").first
    card_ts = card.get_attribute("data-ts")
    charts = page.evaluate(CHART_SIGNATURE_JS)

    start = time.monotonic()
    page.wait_for_function(
        "(ts) => document.querySelector('.gpu-card').dataset.ts !== ts", arg=card_ts, timeout=2000
    )
    page.wait_for_function(
        f"(before) => JSON.stringify(({CHART_SIGNATURE_JS})()) !== JSON.stringify(before)",
        arg=charts,
        timeout=max(1, 2000 - (time.monotonic() - start) * 1000),
    )
    assert float(card.get_attribute("data-ts") or 0) > float(card_ts or 0)
    watch.assert_clean()


def test_range_24h_is_in_the_url_and_redraws_the_charts(page: Page, stack: Stack, watch: Watch):
    open_dashboard(page, stack)
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/history") as answer:
        page.click("[data-range='24h']")
    assert answer.value.status == 200
    query = parse_qs(urlsplit(answer.value.url).query)
    span_s = float(query["to"][0]) - float(query["from"][0])
    assert abs(span_s - DAY_S) < 60, span_s
    assert parse_qs(urlsplit(page.url).query)["range"] == ["24h"]
    assert page.locator("[data-range='24h']").get_attribute("aria-pressed") == "true"
    assert page.locator("[data-range='1h']").get_attribute("aria-pressed") == "false"
    # Redrawn: every chart's time axis now spans a day, with the stored readings on it.
    page.wait_for_function(
        """(ids) => ids.every((id) => {
             const x = Chart.getChart(id).scales.x;
             return Math.abs((x.max - x.min) - 86400e3) < 60e3;
           })""",
        arg=list(CHART_IDS),
    )
    step_s = answer.value.json()["step_s"]
    assert step_s >= DAY_S / 2000
    steps = page.evaluate(
        """() => Chart.getChart('chart-util').data.datasets.map((d) => d.data.length
                   && d.data.some((p) => p.y !== null) && d.data.every((p, i, all) =>
                     i === 0 || p.x > all[i - 1].x))"""
    )
    assert steps == [True] * GPU_COUNT

    # A link to the view opens the same view.
    page.goto(page.url)
    page.wait_for_selector("[data-range='24h'][aria-pressed='true']")
    page.wait_for_function(
        "() => Math.abs(Chart.getChart('chart-util').scales.x.max"
        " - Chart.getChart('chart-util').scales.x.min - 86400e3) < 60e3"
    )
    first = watch.history_requests()[-1]
    assert abs(float(first["to"][0]) - float(first["from"][0]) - DAY_S) < 60
    watch.assert_clean()
    watch.assert_only_host(stack.web_url)


def test_badge_follows_the_web_process_and_the_page_fills_the_gap(browser: Browser, stack: Stack):
    # A very wide page asks for more points, so the hour comes in 2 s buckets and a short
    # outage spans whole buckets that only the fill can bring back.
    watch = Watch()
    context = browser.new_context(viewport={"width": 3800, "height": 900})
    page = context.new_page()
    watch.attach(page)
    try:
        open_dashboard(page, stack)
        badge = "#conn-badge"
        assert page.get_attribute(badge, "data-state") == "live"
        step_s = page.evaluate(
            "() => { const d = Chart.getChart('chart-util').data.datasets[0].data;"
            " return (d[d.length - 1].x - d[d.length - 2].x) / 1000; }"
        )
        assert step_s <= 2, step_s

        stop_s = time.time()
        stack.stop("web")
        page.wait_for_selector(f"{badge}[data-state='reconnecting']", timeout=5000)
        # ticks that the page cannot see: four stored after the web stopped
        query = "SELECT count(DISTINCT ts) FROM readings WHERE ts > ?"
        wait_until(
            lambda: stack.query(query, (stop_s,))[0][0] >= 4,
            60,
            "four ticks stored while the web is down",
            stack,
        )
        with page.expect_response(
            lambda r: urlsplit(r.url).path == "/api/v1/history", timeout=20_000
        ) as fill_answer:
            stack.start("web")
            stack.wait_web()
            page.wait_for_selector(f"{badge}[data-state='live']", timeout=20_000)
        assert fill_answer.value.status == 200
        fill_sent_s = fill_answer.value.request.timing["startTime"] / 1000
        fill = parse_qs(urlsplit(fill_answer.value.url).query)
        fill_from_s, fill_to_s = float(fill["from"][0]), float(fill["to"][0])
        # Only the missed span, from the last live bucket on; not the whole hour again.
        assert fill_from_s <= stop_s and fill_to_s - fill_from_s < 120, fill

        # Every bucket that was complete and stored when the fill was asked for is on the page
        # exactly as the API has it, the buckets of the outage included.
        with urllib.request.urlopen(fill_answer.value.url, timeout=5) as reply:
            truth = json.load(reply)
        step_s = truth["step_s"]
        expected = {
            series["gpu_uuid"]: {
                ts: mean
                for ts, count, mean in zip(
                    truth["ts"], series["count"], series["mean"]["util_gpu_pct"], strict=True
                )
                if ts + step_s <= fill_sent_s - 3 and count
            }
            for series in truth["series"]
        }
        assert any(ts + step_s > stop_s for ts in next(iter(expected.values()))), (
            "no complete bucket inside the outage to check"
        )

        mismatches: list[tuple[str, float, float, float | None]] = []

        def page_matches() -> bool:
            drawn = page.evaluate(
                """() => Object.fromEntries(Chart.getChart('chart-util').data.datasets.map((d) =>
                     [d.pcwUuid, d.data.map((p) => [p.x / 1000, p.y])]))"""
            )
            mismatches.clear()
            for uuid, buckets in expected.items():
                points = dict(map(tuple, drawn.get(uuid, [])))
                mismatches.extend(
                    (uuid, ts, mean, points.get(ts))
                    for ts, mean in buckets.items()
                    if points.get(ts) is None or abs(points[ts] - mean) > 1e-6
                )
            return not mismatches

        try:
            wait_until(page_matches, 30, "the missed buckets on the page")
        except AssertionError:
            pytest.fail(f"page differs from the API (uuid, ts, API mean, page): {mismatches[:6]}")
        ordered = page.evaluate(
            """(ids) => ids.every((id) => Chart.getChart(id).data.datasets.every((d) =>
                 d.data.every((p, i, all) => i === 0 || p.x > all[i - 1].x)))""",
            list(CHART_IDS),
        )
        assert ordered, "a chart holds a duplicate or out-of-order point after the reconnect"
        assert page.evaluate("() => document.getElementById('history-error').hidden")
        assert watch.page_errors == []
        assert watch.dialogs == []
    finally:
        context.close()


def test_a_hostile_gpu_name_shows_as_text(page: Page, stack: Stack, watch: Watch):
    open_dashboard(page, stack)
    names = page.locator(".gpu-card .gpu-name").all_inner_texts()
    assert HOSTILE_NAME in names
    assert page.locator(".gpu-card img, #gpu-cards img").count() == 0
    tooltip_names = page.evaluate(
        "() => Chart.getChart('chart-util').data.datasets.map((d) => d.pcwName)"
    )
    assert HOSTILE_NAME in tooltip_names
    page.wait_for_timeout(1000)
    assert watch.dialogs == []
    assert not any(urlsplit(url).path == "/x" for url in watch.requests)
    watch.assert_clean()


def test_a_gpu_whose_reading_failed_shows_its_error(page: Page, stack: Stack, watch: Watch):
    # The simulated GPUs do not fail on their own here: mark GPU 2 as failed in the live feed.
    message = "GPU is lost <b>off the bus</b>"

    def fail_gpu_2(route: WebSocketRoute) -> None:
        server = route.connect_to_server()

        def forward(text: str | bytes) -> None:
            data = json.loads(text)
            ticks = data.get("ticks", []) + ([data["tick"]] if "tick" in data else [])
            for gpu in (gpu for tick in ticks for gpu in tick["gpus"] if gpu["gpu_index"] == 2):
                gpu["latest"].update(dict.fromkeys(METRICS, None), error=message)
            route.send(json.dumps(data))

        server.on_message(forward)

    page.route_web_socket("**/ws", fail_gpu_2)
    open_dashboard(page, stack)
    card = page.locator(".gpu-card[data-state='error']")
    card.wait_for()
    assert card.count() == 1
    text = card.locator(".gpu-error").inner_text()
    assert message in text
    assert "failed since " in text  # the page tells since when, in local time
    assert card.locator(".metric-util").inner_text() == "n/a"
    assert card.locator(".metric-power").inner_text() == "n/a"
    healthy = page.locator(".gpu-card[data-state='ok'] .metric-util").all_inner_texts()
    assert len(healthy) == GPU_COUNT - 1 and all(text.endswith("%") for text in healthy)
    assert page.locator("#gpu-cards b").count() == 0
    watch.assert_clean()


def test_the_page_asks_no_other_host(page: Page, stack: Stack, watch: Watch):
    open_dashboard(page, stack)
    for key in ("6h", "7d", "30d", "1h"):
        with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/history"):
            page.click(f"[data-range='{key}']")
    page.wait_for_timeout(1500)
    watch.assert_only_host(stack.web_url)
    assert len(watch.websockets) == 1
    watch.assert_clean()
