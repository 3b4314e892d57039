"""The dashboard over a hub: two samplers (hosts a and b, 2 simulated GPUs each) and one hub.

The page lists both hosts in its selector, groups the GPU cards under a heading per host, keeps
the chosen host in the URL, and shows a host that stops ticking as stale, with the time it was
last seen in the browser's time zone, its GPUs still listed.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import Browser, Page

from tests.browser.test_dashboard import Watch
from tests.stack import Stack, wait_until
from tests.test_hub import Hub

pytestmark = pytest.mark.browser

HOSTS = ("a", "b")
GPUS_PER_HOST = 2
TIME_ZONE = "Asia/Kolkata"  # UTC+05:30: a local time that no UTC rendering could match


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with ExitStack() as stack:
        samplers = {}
        for host in HOSTS:
            env = {"PCW_HOST_NAME": host, "PCW_SIM_GPUS": str(GPUS_PER_HOST), "PCW_INTERVAL_S": "1"}
            folder = tmp_path_factory.mktemp(f"sampler-{host}")
            samplers[host] = stack.enter_context(
                Stack(folder, env, supervised=False, programs=("sampler",))
            )
        subscribe = ",".join(s.env["PCW_PUB_ENDPOINT"] for s in samplers.values())
        env = {"PCW_SUBSCRIBE": subscribe, "PCW_HOST_NAME": "hub", "PCW_INTERVAL_S": "1"}
        folder = tmp_path_factory.mktemp("hub")
        hub_stack = stack.enter_context(
            Stack(folder, env, supervised=False, programs=("writer", "web"))
        )
        hub_stack.wait_web()
        hub = Hub(samplers, hub_stack)
        wait_until(lambda: all(hub.stored_ticks(h) >= 3 for h in HOSTS), 30, "ticks", hub_stack)
        yield hub


def open_hub_page(page: Page, hub: Hub, query: str = "") -> None:
    """Open the hub's page and wait for every GPU card and the live feed."""
    page.goto(f"{hub.hub.web_url}/{query}")
    page.wait_for_selector(f".gpu-card >> nth={len(HOSTS) * GPUS_PER_HOST - 1}")
    page.wait_for_selector("#conn-badge[data-state='live']")


def uuids_by_host(hub: Hub) -> dict[str, set[str]]:
    """Return the API's GPU UUIDs per host."""
    found: dict[str, set[str]] = {}
    for gpu in hub.api("/api/v1/gpus")["gpus"]:
        found.setdefault(gpu["host"], set()).add(gpu["gpu_uuid"])
    return found


def drawn_uuids(page: Page) -> list[str]:
    """Return the GPUs whose lines the utilization chart draws and lists in its legend."""
    return page.evaluate(
        """() => {
             const chart = Chart.getChart('chart-util');
             return chart.data.datasets.filter((d, i) => chart.isDatasetVisible(i))
               .map((d) => d.pcwUuid);
           }"""
    )


def test_the_selector_lists_both_hosts_and_the_cards_are_grouped(
    page: Page, hub: Hub, watch: Watch
):
    open_hub_page(page, hub)
    page.wait_for_function("() => document.querySelectorAll('#host-select option').length === 3")
    assert page.locator("#host-select option").all_inner_texts() == ["All hosts", *HOSTS]
    assert page.input_value("#host-select") == ""

    expected = uuids_by_host(hub)
    assert sorted(expected) == list(HOSTS)
    groups = page.locator(".host-group")
    assert [groups.nth(i).get_attribute("data-host") for i in range(groups.count())] == list(HOSTS)
    for host in HOSTS:
        group = page.locator(f".host-group[data-host='{host}']")
        assert group.locator(".host-title").is_visible()
        assert group.locator(".host-name").inner_text() == host
        assert not group.locator(".host-stale").is_visible()
        cards = group.locator(".gpu-card")
        shown = {cards.nth(i).get_attribute("data-gpu-uuid") for i in range(cards.count())}
        assert shown == expected[host]

    # Choosing b: b's cards and lines only, its history asked by host, and the URL says so.
    with page.expect_response(lambda r: urlsplit(r.url).path == "/api/v1/history") as answer:
        page.select_option("#host-select", "b")
    assert answer.value.status == 200
    assert parse_qs(urlsplit(answer.value.url).query)["host"] == ["b"]
    assert parse_qs(urlsplit(page.url).query)["host"] == ["b"]
    assert not page.locator(".host-group[data-host='a']").is_visible()
    assert page.locator(".host-group[data-host='b'] .gpu-card").count() == GPUS_PER_HOST
    page.wait_for_function(
        "(n) => Chart.getChart('chart-util').data.datasets.filter((d) => !d.hidden).length === n",
        arg=GPUS_PER_HOST,
    )
    assert set(drawn_uuids(page)) == expected["b"]

    # A link to the view opens the same view.
    page.goto(page.url)
    page.wait_for_selector("#conn-badge[data-state='live']")
    page.wait_for_function("() => document.getElementById('host-select').value === 'b'")
    assert not page.locator(".host-group[data-host='a']").is_visible()
    assert page.locator(".host-group[data-host='b']").is_visible()

    # Back to all hosts.
    page.select_option("#host-select", "")
    assert "host" not in parse_qs(urlsplit(page.url).query)
    assert page.locator(".host-group[data-host='a']").is_visible()
    page.wait_for_function(
        "(n) => Chart.getChart('chart-util').data.datasets.filter((d) => !d.hidden).length === n",
        arg=len(HOSTS) * GPUS_PER_HOST,
    )
    watch.assert_clean()
    watch.assert_only_host(hub.hub.web_url)


def test_a_stopped_host_shows_stale_with_its_last_seen_local_time(browser: Browser, hub: Hub):
    watch = Watch()
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, timezone_id=TIME_ZONE)
    page = context.new_page()
    watch.attach(page)
    try:
        open_hub_page(page, hub)
        assert page.evaluate("() => new Date().getTimezoneOffset()") == -330  # UTC+05:30
        b_group = page.locator(".host-group[data-host='b']")
        assert not b_group.locator(".host-stale").is_visible()

        assert hub.samplers["b"].stop("sampler") == 0
        wait_until(lambda: hub.hosts()["b"]["stale"], 30, "the hub to call b stale", hub.hub)
        last_seen_s = hub.hosts()["b"]["last_seen_ts"]
        b_group.locator(".host-stale").wait_for(state="visible", timeout=30_000)

        # The heading says when b was last seen, as the browser writes that time in its zone.
        local = page.evaluate(
            """(ts) => new Date(ts * 1000).toLocaleTimeString(undefined,
                 { hour: '2-digit', minute: '2-digit', second: '2-digit' })""",
            last_seen_s,
        )
        page.wait_for_function(
            "(text) => document.querySelector(\".host-group[data-host='b'] .host-seen\")"
            ".textContent === `last seen ${text}`",
            arg=local,
        )
        # b's GPUs stay listed; a goes on, not stale.
        assert b_group.locator(".gpu-card").count() == GPUS_PER_HOST
        assert b_group.get_attribute("data-stale") == "true"
        a_group = page.locator(".host-group[data-host='a']")
        assert a_group.get_attribute("data-stale") == "false"
        assert not a_group.locator(".host-stale").is_visible()
        assert page.locator("#host-select option").all_inner_texts() == ["All hosts", *HOSTS]
        watch.assert_clean()
    finally:
        context.close()
