"""The dashboard's processes, MIG instances, usage and energy, in a real headless Chromium.

The stack runs 5 simulated GPUs at 1 s, GPU 3 in MIG mode, GPU 4 held idle by a forgotten
notebook (flagged after 2 s), every training job named with HTML in it, and an energy price. Each
test compares what the page shows with what the API answers.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit
from zoneinfo import ZoneInfo

import pytest
from playwright.sync_api import Browser, Page

from services.sampler.simulated_nvml import SimulatedNvml
from tests.browser.test_dashboard import VIEWPORT, Watch
from tests.stack import Stack, running_stack, wait_until

pytestmark = pytest.mark.browser

GPU_COUNT = 5
MIG_INDEX = 3
IDLE_INDEX = 4
IDLE_AFTER_S = 2.0
BROWSER_TIME_ZONE = "Pacific/Chatham"  # UTC+12:45 or +13:45: unlike the machine's own
HOSTILE_PROCESS = "<img src=x onerror=alert(1)>"
PRICE_PER_KWH = "0.25"
CURRENCY = "EUR"

# Per card: its GPU, the tick time its reading is from, and each row of its process table.
CARD_PROCESSES_JS = """() => [...document.querySelectorAll('.gpu-card')].map((card) => ({
  uuid: card.dataset.gpuUuid,
  index: Number(card.querySelector('.gpu-index').textContent.replace('GPU ', '')),
  ts: Number(card.dataset.ts),
  rows: [...card.querySelectorAll('.process-table tbody tr.process-row')].map(rowData),
}))"""
ROW_DATA_JS = """const rowData = (row) => ({
  pid: Number(row.dataset.pid),
  visible: row.dataset.visible === 'true',
  user: row.querySelector('.process-user').textContent,
  name: row.querySelector('.process-name').textContent,
  cmd: row.querySelector('.process-cmd').textContent,
  cmdTitle: row.querySelector('.process-cmd').title,
  mem: row.querySelector('.process-mem').textContent,
});"""


WINDOW_S = 900.0  # how long GPU 0 must keep training for this module's tests


def trains(host: str, t_s: float) -> bool:
    """Return whether the simulated GPU 0 of host runs its (named) training job busily at t_s."""
    nvml = SimulatedNvml(
        GPU_COUNT, host=host, clock=lambda: t_s, mig_gpus=(MIG_INDEX,), idle_gpus=(IDLE_INDEX,)
    )
    nvml.nvmlInit()
    utilization = nvml.nvmlDeviceGetUtilizationRates(nvml.nvmlDeviceGetHandleByIndex(0)).gpu
    return utilization >= 50 and bool(nvml.processes(nvml.devices[0]))


def choose_host(now_s: float) -> str:
    """Return a host name whose GPU 0 trains from now_s for WINDOW_S.

    The simulated load is a function of the host name and the time, so the tests need not wait
    for the time of day at which some GPU trains. Checked every 30 s across the window: a rest
    between two training phases is longer than that (30% + 10% of a cycle of 20 min or more).
    """
    checks_s = [now_s + offset_s for offset_s in range(0, int(WINDOW_S) + 1, 30)]
    for number in range(10_000):
        host = f"lab{number}"
        if all(trains(host, t_s) for t_s in checks_s):
            return host
    raise AssertionError("no host name keeps the simulated GPU 0 training")


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    env = {
        "PCW_HOST_NAME": choose_host(time.time()),
        "PCW_SIM_GPUS": str(GPU_COUNT),
        "PCW_INTERVAL_S": "1",
        "PCW_SIM_MIG_GPUS": str(MIG_INDEX),
        "PCW_SIM_IDLE_GPUS": str(IDLE_INDEX),
        "PCW_IDLE_AFTER_S": str(IDLE_AFTER_S),
        "PCW_SIM_PROCESS_NAMES": ";".join([HOSTILE_PROCESS] * GPU_COUNT),
        "PCW_ENERGY_PRICE_PER_KWH": PRICE_PER_KWH,
        "PCW_CURRENCY": CURRENCY,
    }
    with running_stack(tmp_path_factory.mktemp("stack"), env, ticks=5) as running:
        yield running


def api(stack: Stack, path: str, **query: object) -> Any:
    """Return the JSON answer of GET path?query on the stack's web process."""
    url = f"{stack.web_url}{path}" + (f"?{urlencode(query)}" if query else "")
    with urllib.request.urlopen(url, timeout=5) as reply:
        return json.load(reply)


def open_page(page: Page, stack: Stack) -> None:
    """Open the dashboard; wait for every card, the live feed and drawn chart lines."""
    page.goto(f"{stack.web_url}/")
    page.wait_for_selector(f".gpu-card >> nth={GPU_COUNT - 1}")
    page.wait_for_selector("#conn-badge[data-state='live']")
    page.wait_for_function(
        """(count) => ['chart-util', 'chart-mem'].every((id) => {
             const chart = window.Chart && Chart.getChart(id);
             return chart && chart.data.datasets.length === count
               && chart.data.datasets.some((d) => d.data.filter((p) => p.y !== null).length > 2);
           })""",
        arg=GPU_COUNT,
    )


def card_processes(page: Page) -> list[dict[str, Any]]:
    """Return each card's tick time and process rows, read at one instant."""
    return page.evaluate(f"() => {{ {ROW_DATA_JS} return ({CARD_PROCESSES_JS})(); }}")


def stored_processes(stack: Stack, uuid: str, ts: float) -> list[dict[str, Any]]:
    """Return the processes the API has for the tick at ts, waiting until that tick is stored."""
    found: dict[str, Any] = {}

    def stored() -> bool:
        found.update(api(stack, "/api/v1/processes", gpu=uuid, at=ts))
        return found["ts"] is not None and abs(found["ts"] - ts) < 1e-3

    wait_until(stored, 10, f"the tick at {ts} of {uuid} in /api/v1/processes", stack)
    return found["processes"]


def check_cards_against_api(stack: Stack, cards: list[dict[str, Any]]) -> int:
    """Assert each card lists the processes the API has for its tick; return how many rows."""
    rows = 0
    for card in cards:
        expected = {proc["pid"]: proc for proc in stored_processes(stack, card["uuid"], card["ts"])}
        shown = {row["pid"]: row for row in card["rows"]}
        assert set(shown) == set(expected), (card["index"], shown, expected)
        for pid, row in shown.items():
            proc = expected[pid]
            assert row["visible"] == proc["visible"]
            if proc["visible"]:
                assert row["name"] == proc["name"]
                assert row["user"] == (proc["user"] or "unknown")
                assert row["cmdTitle"] == (proc["cmdline"] or "")
            else:
                # Shown plainly, never dropped and never given a made-up name.
                assert row["name"] == "not visible"
                assert row["user"] == row["cmd"] == "—"
            assert row["mem"].endswith(("GiB", "MiB", "n/a"))
        rows += len(shown)
    return rows


def test_the_process_tables_show_the_simulated_processes_live(page: Page, stack: Stack, watch):
    open_page(page, stack)
    first = card_processes(page)
    assert [card["index"] for card in first] == list(range(GPU_COUNT))
    # The MIG GPU's instances always run a job each: there is always something to show.
    assert check_cards_against_api(stack, first) >= 3

    # A later tick rewrites the tables from the live feed, again as stored.
    page.wait_for_function(
        "(ts) => Number(document.querySelector('.gpu-card').dataset.ts) > ts", arg=first[0]["ts"]
    )
    later = card_processes(page)
    assert later[0]["ts"] > first[0]["ts"]
    check_cards_against_api(stack, later)
    users = {row["user"] for card in later for row in card["rows"] if row["visible"]}
    assert users & {"root", "alice", "bob", "carol"}, users  # resolved through /proc
    watch.assert_clean()


def test_a_process_name_with_html_shows_as_text(page: Page, stack: Stack, watch: Watch):
    open_page(page, stack)
    # The training jobs carry the hostile name, and GPU 0 trains throughout (choose_host).
    page.wait_for_function(
        "(text) => [...document.querySelectorAll('.process-table .process-cmd')]"
        ".some((cell) => cell.title.includes(text))",
        arg=HOSTILE_PROCESS,
        timeout=60_000,
    )
    rows = [row for card in card_processes(page) for row in card["rows"]]
    hostile = [row for row in rows if HOSTILE_PROCESS in row["cmdTitle"]]
    assert hostile
    for row in hostile:
        assert row["cmd"].startswith(HOSTILE_PROCESS)
        assert HOSTILE_PROCESS.startswith(row["name"])  # the kernel keeps 15 characters of it
    assert page.locator("#gpu-cards img").count() == 0
    page.wait_for_timeout(1000)
    assert watch.dialogs == []
    assert not any(urlsplit(url).path == "/x" for url in watch.requests)
    watch.assert_clean()


def test_clicking_a_chart_point_shows_that_times_processes(page: Page, stack: Stack, watch):
    open_page(page, stack)
    # In view, as for a person about to click it: a chart off the screen is not redrawn per tick.
    page.locator("#chart-mem").scroll_into_view_if_needed()
    # A point of a complete bucket of the memory chart, drawn 10 px or more from other lines'.
    target = page.wait_for_function(
        """() => {
             const chart = Chart.getChart('chart-mem');
             const metas = chart.data.datasets.map((d, i) => chart.getDatasetMeta(i));
             for (let back = 1; back < 30; back += 1) {
               for (const [i, meta] of metas.entries()) {
                 const j = meta.data.length - 1 - back;
                 const raw = chart.data.datasets[i].data[j];
                 if (j < 0 || !raw || raw.y === null) continue;
                 const p = meta.data[j];
                 const clear = metas.every((other, k) => k === i || !other.data.some(
                   (q) => Math.abs(q.x - p.x) < 3 && Math.abs(q.y - p.y) < 10));
                 if (clear) {
                   return { uuid: chart.data.datasets[i].pcwUuid, x: p.x, y: p.y,
                            bucketS: raw.x / 1000 };
                 }
               }
             }
             return null;
           }"""
    ).json_value()
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/processes") as answer:
        page.locator("#chart-mem").click(position={"x": target["x"], "y": target["y"]})
    assert answer.value.status == 200
    query = parse_qs(urlsplit(answer.value.url).query)
    assert query["gpu"] == [target["uuid"]]
    at_s = float(query["at"][0])
    step_s = page.evaluate(
        "() => { const d = Chart.getChart('chart-mem').data.datasets[0].data;"
        " return (d[d.length - 1].x - d[d.length - 2].x) / 1000; }"
    )
    # The last tick of the clicked bucket.
    assert target["bucketS"] <= at_s < target["bucketS"] + step_s

    panel = page.locator("#point-panel")
    panel.wait_for(state="visible")
    page.wait_for_selector("#point-panel[data-state='loaded']")
    assert panel.get_attribute("data-gpu-uuid") == target["uuid"]
    truth = api(stack, "/api/v1/processes", gpu=target["uuid"], at=at_s)
    assert truth["ts"] is not None and target["bucketS"] <= truth["ts"] <= at_s
    assert float(panel.get_attribute("data-ts") or 0) == pytest.approx(truth["ts"])
    shown = page.evaluate(
        f"() => {{ {ROW_DATA_JS} return [...document.querySelectorAll("
        "'#point-table tbody tr.process-row')].map(rowData); }"
    )
    assert sorted(row["pid"] for row in shown) == sorted(p["pid"] for p in truth["processes"])
    index = api(stack, "/api/v1/gpus")["gpus"]
    gpu_index = next(g["gpu_index"] for g in index if g["gpu_uuid"] == target["uuid"])
    assert f"GPU {gpu_index} " in page.locator("#point-title").inner_text()
    if not truth["processes"]:
        assert "No processes at that time" in page.locator("#point-note").inner_text()

    page.click("#point-close")
    assert not panel.is_visible()
    watch.assert_clean()


def test_who_used_the_gpus_shows_rows_by_user_process_and_container(
    page: Page, stack: Stack, watch: Watch
):
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/usage") as answer:
        open_page(page, stack)
    for by, head in (("user", "User"), ("process", "Process"), ("container", "Container")):
        if by != "user":
            with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/usage") as answer:
                page.click(f"[data-usage-by='{by}']")
        assert answer.value.status == 200
        assert parse_qs(urlsplit(answer.value.url).query)["by"] == [by]
        truth = answer.value.json()
        assert truth["rows"], f"the API has no usage by {by}"
        page.wait_for_function(
            "(n) => document.querySelectorAll('#usage-table tbody tr').length === n",
            arg=len(truth["rows"]),
        )
        assert page.locator("#usage-key-head").inner_text() == head
        assert page.get_attribute(f"[data-usage-by='{by}']", "aria-pressed") == "true"
        keys = page.locator("#usage-table .usage-key").all_inner_texts()
        assert keys == [row["key"] or "not visible / unknown" for row in truth["rows"]]
        hours = page.locator("#usage-table .usage-gpu-hours").all_inner_texts()
        assert len(hours) == len(truth["rows"]) and any(text not in ("0", "n/a") for text in hours)
        mem_hours = page.locator("#usage-table .usage-mem-hours").all_inner_texts()
        assert all(text.endswith("GiB·h") for text in mem_hours)
    watch.assert_clean()


def test_energy_shows_kwh_per_gpu_with_its_source_and_cost(page: Page, stack: Stack, watch):
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/energy") as answer:
        open_page(page, stack)
    truth = answer.value.json()
    assert len(truth["gpus"]) == GPU_COUNT and truth["price_per_kwh"] == float(PRICE_PER_KWH)
    page.wait_for_selector("#energy-gpus tbody tr")
    rows = page.locator("#energy-gpus tbody tr")
    assert rows.count() == GPU_COUNT
    words = {"counter": "energy counter", "power": "power readings, integrated"}
    for i, gpu in enumerate(sorted(truth["gpus"], key=lambda g: g["gpu_index"])):
        row = rows.nth(i)
        assert row.get_attribute("data-gpu-uuid") == gpu["gpu_uuid"]
        assert row.locator(".energy-kwh").inner_text().endswith(" kWh")
        assert row.locator(".energy-source").inner_text() == words.get(gpu["source"], "")
        # The cost in the currency set, as the browser writes money.
        cost = page.evaluate(
            "([value, code]) => new Intl.NumberFormat(undefined,"
            " { style: 'currency', currency: code }).format(value)",
            [gpu["cost"], CURRENCY],
        )
        assert row.locator(".energy-cost").inner_text() == cost
    total = page.locator("#energy-total .energy-total-kwh").inner_text()
    assert total.endswith(" kWh") and total != "0 kWh"
    assert "per kWh" in page.locator("#energy-note").inner_text()
    watch.assert_clean()


def test_a_mig_gpu_lists_its_instances_with_na_utilization(page: Page, stack: Stack, watch):
    open_page(page, stack)
    gpus = {g["gpu_index"]: g for g in api(stack, "/api/v1/gpus")["gpus"]}
    devices = gpus[MIG_INDEX]["mig_devices"]
    assert len(devices) == 3
    card = page.locator(f".gpu-card[data-gpu-uuid='{gpus[MIG_INDEX]['gpu_uuid']}']")
    rows = card.locator(".mig-device")
    assert rows.count() == len(devices)
    for i, device in enumerate(sorted(devices, key=lambda d: d["index"])):
        row = rows.nth(i)
        assert row.get_attribute("data-mig-uuid") == device["uuid"]
        assert device["name"] in row.locator(".mig-name").inner_text()
        assert device["util_gpu_pct"] is None
        assert row.locator(".mig-util").inner_text() == "n/a"  # unsupported: n/a, never 0
        total_gib = device["mem_total_bytes"] / 1024**3
        assert row.locator(".mig-mem").inner_text().endswith(f" / {total_gib:.1f} GiB")
    assert card.locator(".metric-util").inner_text() == "n/a"
    # The other GPUs have no MIG list.
    for index in range(GPU_COUNT):
        if index != MIG_INDEX:
            other = page.locator(f".gpu-card[data-gpu-uuid='{gpus[index]['gpu_uuid']}']")
            assert other.locator(".mig-device").count() == 0
            assert not other.locator(".gpu-mig").is_visible()
    watch.assert_clean()


IDLE_CARDS_JS = """() => [...document.querySelectorAll('.gpu-card')].map((card) => {
  const badge = card.querySelector('.idle-badge');
  const note = card.querySelector('.gpu-idle');
  return {
    uuid: card.dataset.gpuUuid,
    badge: badge.checkVisibility() ? badge.textContent : null,
    note: note.checkVisibility() ? note.textContent : null,
  };
})"""


def busy_gpu_indexes(answer: dict[str, Any]) -> list[int]:
    """Return the GPUs of a /api/v1/gpus answer computing at or over the idle threshold now."""
    return [
        gpu["gpu_index"]
        for gpu in answer["gpus"]
        if (gpu["latest"] or {}).get("util_gpu_pct") is not None
        and gpu["latest"]["util_gpu_pct"] >= answer["idle_util_pct"]
    ]


def browser_when(since_s: float) -> str:
    """Return since_s as the page writes it in the browser's time zone (en-US)."""
    zone = ZoneInfo(BROWSER_TIME_ZONE)
    since = datetime.fromtimestamp(since_s, zone)
    if since.date() == datetime.now(zone).date():
        return f"{since:%I:%M:%S %p}"
    return f"{since:%b} {since.day}, {since:%I:%M %p}"


def test_an_idle_but_allocated_gpu_says_since_when_and_who_holds_it(
    browser: Browser, stack: Stack, watch: Watch
):
    # The simulated training GPUs all rest at times (a few % of the day): wait for a busy one.
    wait_until(
        lambda: busy_gpu_indexes(api(stack, "/api/v1/gpus")), 600, "a busy simulated GPU", stack
    )
    context = browser.new_context(viewport=VIEWPORT, locale="en-US", timezone_id=BROWSER_TIME_ZONE)
    try:
        page = context.new_page()
        watch.attach(page)
        with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/gpus") as answer:
            open_page(page, stack)
        truth = answer.value.json()
        cards = {card["uuid"]: card for card in page.evaluate(IDLE_CARDS_JS)}
        assert page.evaluate("() => Intl.DateTimeFormat().resolvedOptions().timeZone") == (
            BROWSER_TIME_ZONE
        )
    finally:
        context.close()
    assert truth["idle_after_s"] == IDLE_AFTER_S
    gpus = {gpu["gpu_index"]: gpu for gpu in truth["gpus"]}
    assert len(cards) == len(gpus) == GPU_COUNT

    # The notebook's GPU: flagged since the notebook was first seen, and it names the notebook.
    idle_gpu = gpus[IDLE_INDEX]
    assert idle_gpu["latest"]["util_gpu_pct"] == 0
    assert idle_gpu["idle"] is not None, idle_gpu
    [notebook] = idle_gpu["processes"]
    [holder] = idle_gpu["idle"]["processes"]
    assert holder["pid"] == notebook["pid"]
    assert (holder["user"], holder["name"]) == ("carol", "python")
    assert "ipykernel_launcher" in holder["cmdline"]
    since_s = idle_gpu["idle"]["since_ts"]
    assert since_s == notebook["since_ts"]
    card = cards[idle_gpu["gpu_uuid"]]
    assert card["badge"] == "idle but allocated"
    note = card["note"].replace("\u202f", " ").replace("\xa0", " ")
    assert note.startswith(f"Idle but allocated since {browser_when(since_s)} ("), note
    assert note.endswith(f", held by carol (python {holder['pid']})"), note

    # Every other GPU the API does not flag shows no badge; one of them is busy computing.
    busy = busy_gpu_indexes(truth)
    assert busy, truth
    for index, gpu in gpus.items():
        if index == IDLE_INDEX:
            continue
        shown = cards[gpu["gpu_uuid"]]
        assert (shown["badge"] is None) == (gpu["idle"] is None), (index, gpu["idle"])
        if index in busy:
            assert gpu["idle"] is None and shown["badge"] is None and shown["note"] is None
    watch.assert_clean()
