"""In the browser: a GPU's own page, opened from its card on the dashboard.

The real stack on four simulated GPUs at 1 s: GPU 0 a GeForce RTX 4090 (the only one that reports
its fan), GPU 1 an H100 that reported XID 13 at the start, GPU 2 an A100 with rows pending remap
after uncorrectable ECC errors, GPU 3 an L40S whose PCIe link trained down to x8.
Chart.getChart(canvas id) is Chart.js's own look-up: the tests read what the charts draw.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from playwright.sync_api import Page, Route, expect

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import DAY_S, Watch
from tests.browser.test_processes import api
from tests.stack import Stack, running_stack

pytestmark = pytest.mark.browser

HOST = "gpu-page-in-browser"
GPU_COUNT = 4
XID_GPU, REMAP_GPU, LINK_GPU = 1, 2, 3
SIX_HOURS_S = 6 * 3600


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PCW_SIM_GPUS": str(GPU_COUNT),
        "PCW_SIM_XID_GPUS": str(XID_GPU),
        "PCW_SIM_REMAP_GPUS": str(REMAP_GPU),
        "PCW_SIM_DEGRADED_LINK_GPUS": str(LINK_GPU),
        "PCW_INTERVAL_S": "1",
        "PCW_HOST_NAME": HOST,
    }
    with running_stack(tmp_path_factory.mktemp("stack"), env, ticks=3) as running:
        yield running


def uuid_of(index: int) -> str:
    return SimulatedNvml(GPU_COUNT, host=HOST).devices[index].uuid


def card(page: Page, index: int):
    return page.locator(f".gpu-card[data-gpu-uuid='{uuid_of(index)}']")


def fact(page: Page, key: str) -> str:
    return page.locator(f"dd[data-fact='{key}']").inner_text()


def open_from_dashboard(page: Page, stack: Stack, index: int) -> list[str]:
    """Open the dashboard, click GPU index's name; return the findings its card showed."""
    page.goto(stack.web_url + "/")
    expect(card(page, index)).to_have_attribute("data-health", "findings")
    findings = card(page, index).locator(".gpu-finding").all_inner_texts()
    card(page, index).locator(".gpu-name").click()
    page.wait_for_url(f"**/gpu/{uuid_of(index)}")
    return findings


def wait_for_lines(page: Page, chart: str, labels: list[str]) -> None:
    """Wait until the chart draws these lines, each with at least one value."""
    page.wait_for_function(
        """([id, labels]) => {
             const chart = window.Chart && Chart.getChart(id);
             return chart && labels.every((label) => chart.data.datasets.some((d) =>
               d.label === label && d.data.some((p) => p.y !== null)));
           }""",
        arg=[chart, labels],
    )


def chart_labels(page: Page, chart: str) -> list[str]:
    return page.evaluate(f"() => Chart.getChart('{chart}').data.datasets.map((d) => d.label)")


def test_a_cards_name_opens_its_gpu_page_with_identity_charts_and_findings(
    page: Page, stack: Stack, watch: Watch
):
    card_findings = open_from_dashboard(page, stack, REMAP_GPU)
    gpu = next(g for g in api(stack, "/api/v1/gpus")["gpus"] if g["gpu_uuid"] == uuid_of(REMAP_GPU))

    # The header: which GPU, where, and its identity and limits in words.
    expect(page.locator("h1")).to_contain_text(f"GPU {REMAP_GPU}")
    expect(page.locator("h1")).to_contain_text("NVIDIA A100-SXM4-40GB")
    assert page.locator("#gpu-host").inner_text() == HOST
    expect(page.locator("dd[data-fact='uuid']")).to_have_text(uuid_of(REMAP_GPU))
    assert fact(page, "pci") == gpu["pci_bus_id"] == "00000000:37:00.0"
    assert fact(page, "driver") == gpu["driver_version"]
    assert fact(page, "cuda") == gpu["cuda_version"]
    limits = gpu["limits"]
    assert fact(page, "max-clocks") == (
        f"SM {limits['max_sm_clock_mhz']:,} MHz · memory {limits['max_mem_clock_mhz']:,} MHz"
    )
    low, high = limits["power_limit_min_w"], limits["power_limit_max_w"]
    assert f"settable {low:,.0f}\u2013{high:,.0f} W" in fact(page, "power-limit")
    assert f"slowdown {limits['temp_slowdown_c']} °C" in fact(page, "temp-limits")
    assert f"max Gen{limits['pcie_max_gen']} x{limits['pcie_max_width']}" in fact(page, "pcie")

    # Its findings, word for word as its card showed them.
    expect(page.locator("#gpu-header .gpu-finding")).to_have_count(len(card_findings))
    assert page.locator("#gpu-header .gpu-finding").all_inner_texts() == card_findings
    assert card_findings[0].startswith("2 rows pending remap (a GPU reset applies it) since ")
    expect(page.locator("#gpu-header .health-badge")).to_have_text("2 health issues")

    # The charts, 6 h by default, drawn from this GPU's history.
    expect(page.locator("[data-range='6h']")).to_have_attribute("aria-pressed", "true")
    wait_for_lines(page, "gpu-chart-util", ["GPU utilization"])
    wait_for_lines(page, "gpu-chart-mem", ["Used", "Total", "Memory bus busy"])
    wait_for_lines(page, "gpu-chart-temp", ["GPU"])
    wait_for_lines(page, "gpu-chart-power", ["Draw", "Enforced limit"])
    wait_for_lines(page, "gpu-chart-clocks", ["SM clock", "Memory clock"])
    span_ms = page.evaluate(
        "() => { const x = Chart.getChart('gpu-chart-util').scales.x; return x.max - x.min; }"
    )
    assert abs(span_ms / 1000 - SIX_HOURS_S) < 60
    history = watch.history_requests()[-1]
    assert history["gpu"] == [uuid_of(REMAP_GPU)]
    assert "util_gpu_pct" in history["metric"] and "temp_c" in history["metric"]
    # The A100 has no fan: no line for it, never a 0, and a note that says why.
    assert "Fan" not in chart_labels(page, "gpu-chart-temp")
    expect(page.locator(".gpu-chart[data-chart='temp'] .chart-note")).to_contain_text(
        "Fan: not reported by this GPU."
    )
    util_stat = page.locator(
        ".gpu-chart[data-chart='util'] .chart-stat[data-metric='util_gpu_pct']"
    )
    expect(util_stat).to_contain_text("GPU utilization: mean ")

    # Who is on it now and over the range, from the stack's process lists: the simulated jobs
    # come and go with their load cycle, so either the list or the sentence saying it is empty.
    now_rows = page.locator("#now-processes tbody tr").first
    expect(now_rows.or_(page.get_by_text("No process is on this GPU now."))).to_be_visible()
    range_rows = page.locator("#usage-table tbody tr").first
    nobody = page.get_by_text("No process held this GPU in this range.")
    expect(range_rows.or_(nobody)).to_be_visible()
    watch.assert_clean()
    watch.assert_only_host(stack.web_url)


def test_activity_metrics_are_drawn_where_the_gpu_reports_them(
    page: Page, stack: Stack, watch: Watch
):
    open_from_dashboard(page, stack, XID_GPU)  # the H100: GPM
    wait_for_lines(page, "gpu-chart-util", ["GPU utilization", "SM active", "Tensor cores active"])
    page.goto(f"{stack.web_url}/gpu/{uuid_of(LINK_GPU)}")  # the L40S: none
    wait_for_lines(page, "gpu-chart-util", ["GPU utilization"])
    assert "SM active" not in chart_labels(page, "gpu-chart-util")
    expect(page.locator(".gpu-chart[data-chart='util'] .chart-note")).to_contain_text(
        "SM active, Tensor cores active, DRAM active: not reported by this GPU."
    )
    watch.assert_clean()


def test_the_events_of_the_range_are_listed_newest_first(page: Page, stack: Stack, watch: Watch):
    open_from_dashboard(page, stack, XID_GPU)
    xid = page.locator(".gpu-event[data-kind='xid']").first
    expect(xid).to_contain_text("XID")
    expect(xid.locator(".gpu-event-kind")).to_have_text("XID")
    expect(page.locator("#events-summary")).to_contain_text("XID")
    expect(page.locator("#events-summary")).to_contain_text("in this range.")
    times = page.locator(".gpu-event time").evaluate_all(
        "(nodes) => nodes.map((n) => Date.parse(n.dateTime))"
    )
    assert times == sorted(times, reverse=True)
    watch.assert_clean()


def test_the_range_is_chosen_by_button_and_kept_in_the_url(page: Page, stack: Stack, watch: Watch):
    page.goto(f"{stack.web_url}/gpu/{uuid_of(0)}")
    wait_for_lines(page, "gpu-chart-temp", ["GPU", "Fan"])  # the GeForce reports its fan
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/history") as answer:
        page.focus("[data-range='24h']")  # a button, so reached and pressed from the keyboard
        page.keyboard.press("Enter")
    assert answer.value.status == 200
    query = parse_qs(urlsplit(answer.value.url).query)
    assert abs(float(query["to"][0]) - float(query["from"][0]) - DAY_S) < 60
    assert parse_qs(urlsplit(page.url).query)["range"] == ["24h"]
    expect(page.locator("[data-range='24h']")).to_have_attribute("aria-pressed", "true")
    expect(page.locator("[data-range='6h']")).to_have_attribute("aria-pressed", "false")
    page.wait_for_function(
        "() => Math.abs(Chart.getChart('gpu-chart-util').scales.x.max"
        " - Chart.getChart('gpu-chart-util').scales.x.min - 86400e3) < 60e3"
    )
    expect(page.locator("#charts-title")).to_contain_text("last 24h")
    watch.assert_clean()


def test_an_unknown_uuid_is_a_404_page_that_says_so(page: Page, stack: Stack, watch: Watch):
    asked = "GPU-<b>not-here</b>"
    response = page.goto(f"{stack.web_url}/gpu/{quote(asked, safe='')}")
    assert response is not None and response.status == 404
    assert response.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    expect(page.locator("h1")).to_have_text("Unknown GPU")
    expect(page.locator("#asked-uuid")).to_have_text(asked)  # as text, never as HTML
    assert page.locator("b").count() == 0
    page.click("text=Back to the dashboard")
    page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
    # Chromium reports the 404 document itself on the console; nothing else may be there.
    assert all("status of 404" in error for error in watch.console_errors), watch.console_errors
    assert watch.page_errors == [] and watch.dialogs == []


def event(uuid: str, ts: float, kind: str, code: int | None, text: str) -> dict:
    """Return one event as /api/v1/events lists it."""
    return {
        "ts": ts,
        "gpu_uuid": uuid,
        "host": HOST,
        "gpu_index": XID_GPU,
        "kind": kind,
        "code": code,
        "text": text,
    }


def counts(uuid: str, **values: float | None) -> dict:
    """Return one GPU's counts as /api/v1/events gives them; values override zeros."""
    zeros = dict.fromkeys(("xids", "ecc_corrected", "ecc_uncorrected", "pcie_replays"), 0)
    zeros.update(thermal_violation_s=0.0, power_violation_s=0.0)
    return {"gpu_uuid": uuid, **zeros, **values}


def test_events_in_the_routes_shape_read_as_a_summary_and_a_list_newest_first(
    page: Page, stack: Stack, watch: Watch
):
    """The page against a canned /api/v1/events reply: order, words, counts, hostile text."""
    uuid = uuid_of(XID_GPU)
    now_s = time.time()
    hostile = "<img src=x onerror=alert(1)>"
    reply = {
        "from": now_s - SIX_HOURS_S,
        "to": now_s,
        "events": [
            event(uuid, now_s - 3000, "xid", 13, "XID 13 (graphics engine exception)"),
            event(uuid, now_s - 60, "throttling_started", None, hostile),
            event(uuid, now_s - 600, "xid", 31, "XID 31 (GPU memory page fault)"),
            event(uuid, now_s - 2000, "ecc_uncorrected", None, "2 uncorrected ECC errors"),
            event(uuid, now_s - 1000, "xid", 13, "XID 13 (graphics engine exception)"),
        ],
        "truncated": True,
        "counts": [
            counts(uuid_of(0), xids=7),
            counts(
                uuid,
                xids=3,
                ecc_corrected=None,
                ecc_uncorrected=2,
                thermal_violation_s=41.0,
                power_violation_s=None,
            ),
        ],
    }
    asked: list[dict[str, list[str]]] = []

    def answer_events(route: Route) -> None:
        asked.append(parse_qs(urlsplit(route.request.url).query))
        route.fulfill(json=reply)

    page.route("**/api/v1/events?*", answer_events)
    page.goto(f"{stack.web_url}/gpu/{uuid}")

    expect(page.locator("#events-summary")).to_have_text(
        "3 XIDs, 2 uncorrected ECC errors, 41 s of thermal throttling in this range."
    )
    assert asked and asked[0]["gpu"] == [uuid]
    assert abs(float(asked[0]["to"][0]) - float(asked[0]["from"][0]) - SIX_HOURS_S) < 60
    items = page.locator(".gpu-event")
    expect(items).to_have_count(5)
    kinds = items.locator(".gpu-event-kind").all_inner_texts()
    assert kinds == ["Throttling started", "XID", "XID", "Uncorrected ECC error", "XID"]
    assert items.nth(0).locator(".gpu-event-text").inner_text() == hostile  # text, not HTML
    assert page.locator(".gpu-event img").count() == 0
    assert items.nth(1).locator(".gpu-event-text").inner_text() == "XID 31 (GPU memory page fault)"
    # Each time is the browser's local time of the event, its full date in the title.
    stamps = items.locator("time").evaluate_all(
        "(nodes) => nodes.map((n) => [Date.parse(n.dateTime), n.title])"
    )
    assert [ms for ms, _ in stamps] == [
        int((now_s - ago) * 1000) for ago in (60, 600, 1000, 2000, 3000)
    ]
    full = page.evaluate(
        "(ms) => new Date(ms).toLocaleString(undefined, {year: 'numeric', month: 'short',"
        " day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit'})",
        stamps[0][0],
    )
    assert stamps[0][1] == full
    expect(page.locator("#events-note")).to_contain_text("choose a shorter range")
    watch.assert_clean()
