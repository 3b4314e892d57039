"""One staleness rule: a hub over two hosts ticking at different intervals, one of which stops.

The web process's own interval (60 s) is neither host's. From the moment the server calls a host
stale, /api/v1/hosts, /api/v1/gpus, /healthz, /metrics and the page all say so; the page never
says so before the server (it has no rule of its own), and it hears it without asking.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from playwright.sync_api import Page
from prometheus_client.parser import text_string_to_metric_families

from common.staleness import stale_after_s
from tests.browser.test_dashboard import Watch
from tests.stack import Stack, wait_until
from tests.test_hub import Hub

pytestmark = pytest.mark.browser

INTERVALS_S = {"fast": 0.5, "slow": 2.0}  # stale after 11.5 s and 16 s
WEB_INTERVAL_S = 60
FRESH = (False, False, False, False)
STALE = (True, True, True, True)


@pytest.fixture
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with ExitStack() as stack:
        samplers = {}
        for host, interval_s in INTERVALS_S.items():
            env = {"PCW_HOST_NAME": host, "PCW_SIM_GPUS": "1", "PCW_INTERVAL_S": str(interval_s)}
            folder = tmp_path_factory.mktemp(f"sampler-{host}")
            samplers[host] = stack.enter_context(
                Stack(folder, env, supervised=False, programs=("sampler",))
            )
        subscribe = ",".join(s.env["PCW_PUB_ENDPOINT"] for s in samplers.values())
        env = {
            "PCW_SUBSCRIBE": subscribe,
            "PCW_HOST_NAME": "hub",
            "PCW_INTERVAL_S": str(WEB_INTERVAL_S),
        }
        folder = tmp_path_factory.mktemp("hub")
        hub_stack = stack.enter_context(
            Stack(folder, env, supervised=False, programs=("writer", "web"))
        )
        hub_stack.wait_web()
        hub = Hub(samplers, hub_stack)
        wait_until(
            lambda: all(hub.stored_ticks(host) >= 2 for host in INTERVALS_S), 30, "ticks", hub_stack
        )
        yield hub


def page_says(page: Page) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """Return {host: (its heading says stale, each of its cards' state)} as the page shows them."""
    shown = page.evaluate(
        """() => [...document.querySelectorAll('.host-group')].map((group) => [
             group.dataset.host, group.dataset.stale === 'true',
             [...group.querySelectorAll('.gpu-card')].map((card) => card.dataset.state)])"""
    )
    return {host: (stale, tuple(cards)) for host, stale, cards in shown}


def get(hub: Hub, path: str) -> bytes:
    """Return the body of GET path on the hub's web process, whatever its status."""
    try:
        with urllib.request.urlopen(hub.hub.web_url + path, timeout=5) as response:
            return response.read()
    except urllib.error.HTTPError as error:  # /healthz answers 503 with its body
        return error.read()


def server_says(hub: Hub) -> dict[str, tuple[bool, bool, bool, bool]]:
    """Return {host: (/api/v1/hosts, /api/v1/gpus, /healthz, /metrics call it stale)}."""
    hosts = {entry["host"]: entry for entry in json.loads(get(hub, "/api/v1/hosts"))["hosts"]}
    gpus = json.loads(get(hub, "/api/v1/gpus"))["gpus"]
    health = json.loads(get(hub, "/healthz"))
    sending = {
        sample.labels["Hostname"]
        for family in text_string_to_metric_families(get(hub, "/metrics").decode())
        if family.name == "DCGM_FI_DEV_GPU_UTIL"
        for sample in family.samples
    }
    listed = {entry["host"] for entry in health["stale_hosts"]}
    return {
        host: (
            hosts[host]["stale"],
            all(gpu["stale"] for gpu in gpus if gpu["host"] == host),
            host in listed,
            host not in sending,
        )
        for host in INTERVALS_S
    }


def test_the_page_the_api_healthz_and_metrics_call_a_host_stale_together(
    page: Page, hub: Hub, watch: Watch
):
    page.goto(hub.hub.web_url + "/")
    page.wait_for_selector(".gpu-card >> nth=1")
    page.wait_for_selector("#conn-badge[data-state='live']")
    # the hub stored both hosts' ticks; wait until its web process also has them live (/metrics
    # speaks of the live feed only)
    wait_until(
        lambda: server_says(hub) == {"fast": FRESH, "slow": FRESH}, 30, "both hosts fresh", hub.hub
    )
    assert page_says(page) == {"fast": (False, ("ok",)), "slow": (False, ("ok",))}
    gpus = json.loads(get(hub, "/api/v1/gpus"))["gpus"]
    assert {gpu["host"]: gpu["interval_s"] for gpu in gpus} == INTERVALS_S

    assert hub.samplers["fast"].stop("sampler") == 0
    # Until the server calls fast stale (11.5 s after its last tick, not the 6.5 s or 185 s of
    # a rule of the page's own), the page, read first, never calls it stale.
    deadline_s = stale_after_s(INTERVALS_S["fast"]) + 30

    def server_calls_fast_stale() -> bool:
        page_stale = page_says(page)["fast"][0]
        hosts = json.loads(get(hub, "/api/v1/hosts"))["hosts"]
        server_stale = next(entry["stale"] for entry in hosts if entry["host"] == "fast")
        assert server_stale or not page_stale, "the page called fast stale before the server"
        return server_stale

    wait_until(server_calls_fast_stale, deadline_s, "the server to call fast stale", hub.hub)
    # The page hears it at once, over the websocket (its next poll is up to 15 s away).
    page.wait_for_function(
        "() => document.querySelector(\".host-group[data-host='fast']\").dataset.stale === 'true'",
        timeout=3000,
    )

    assert server_says(hub) == {"fast": STALE, "slow": FRESH}
    assert page_says(page) == {"fast": (True, ("stale",)), "slow": (False, ("ok",))}
    health = json.loads(get(hub, "/healthz"))
    assert health["status"] != "down"  # slow still ticks
    # The badge says since when, and by which interval: the server's, not the page's.
    title = page.get_attribute(".host-group[data-host='fast'] .host-stale", "title")
    assert title.startswith("No reading from this host since ") and "every 0.5 s" in title
    watch.assert_clean()
