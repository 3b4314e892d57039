"""A hub over two hosts: two samplers, one writer and one web process subscribed to both."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from common.status import read_status
from tests.stack import Stack, wait_until

INTERVAL_S = 0.5
HOSTS = ("a", "b")


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


class Hub:
    """Sampler stacks by host name, and the hub stack (writer and web) subscribed to all."""

    def __init__(self, samplers: dict[str, Stack], hub: Stack) -> None:
        self.samplers = samplers
        self.hub = hub

    def api(self, path: str) -> dict:
        return get_json(self.hub.web_url + path)

    def hosts(self) -> dict[str, dict]:
        return {entry["host"]: entry for entry in self.api("/api/v1/hosts")["hosts"]}

    def stored_per_gpu(self) -> dict[str, tuple[str, int, int]]:
        """Return {gpu_uuid: (host, readings, distinct tick times)} from the hub's file."""
        rows = self.hub.query(
            "SELECT gpu_uuid, host, count(*), count(DISTINCT ts) FROM readings GROUP BY gpu_uuid"
        )
        return {uuid: (host, count, distinct) for uuid, host, count, distinct in rows}

    def stored_ticks(self, host: str) -> int:
        if not self.hub.db_path.exists():
            return 0
        rows = self.hub.query("SELECT count(DISTINCT ts) FROM readings WHERE host = ?", (host,))
        return int(rows[0][0])


def published_ticks(sampler: Stack) -> int:
    """Return how many ticks a stopped sampler published (seq 0 .. n - 1), from its last line."""
    found = re.findall(r"sampler stopped after (\d+) ticks", sampler.logs())
    assert len(found) == 1, sampler.logs()[-2000:]
    return int(found[0])


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[Hub]:
    with ExitStack() as stack:
        samplers = {}
        for host in HOSTS:
            folder = tmp_path / f"sampler-{host}"
            folder.mkdir()
            env = {"PCW_HOST_NAME": host, "PCW_SIM_GPUS": "2", "PCW_INTERVAL_S": str(INTERVAL_S)}
            samplers[host] = stack.enter_context(
                Stack(folder, env, supervised=False, programs=("sampler",))
            )
        folder = tmp_path / "hub"
        folder.mkdir()
        subscribe = ",".join(s.env["PCW_PUB_ENDPOINT"] for s in samplers.values())
        env = {"PCW_SUBSCRIBE": subscribe, "PCW_HOST_NAME": "hub", "PCW_INTERVAL_S": "60"}
        hub_stack = stack.enter_context(
            Stack(folder, env, supervised=False, programs=("writer", "web"))
        )
        yield Hub(samplers, hub_stack)


def test_two_hosts_listed_one_goes_stale_and_a_writer_kill_loses_nothing(hub: Hub):
    hub.hub.wait_web()
    wait_until(lambda: all(hub.stored_ticks(h) >= 4 for h in HOSTS), 30, "ticks of both", hub.hub)

    # Both hosts live: 4 GPUs on 2 hosts, neither stale.
    gpus = hub.api("/api/v1/gpus")["gpus"]
    assert [(g["host"], g["gpu_index"]) for g in gpus] == [("a", 0), ("a", 1), ("b", 0), ("b", 1)]
    assert len({g["gpu_uuid"] for g in gpus}) == 4
    assert not any(g["host_stale"] for g in gpus)
    hosts = hub.hosts()
    assert sorted(hosts) == ["a", "b"]
    for entry in hosts.values():
        assert entry["stale"] is False
        assert (entry["gpu_count"], entry["interval_s"]) == (2, INTERVAL_S)
        assert entry["last_seen_ts"] > time.time() - 60

    # The writer killed while both hosts tick: each host's missed ticks are asked of its sampler.
    before = {h: hub.stored_ticks(h) for h in HOSTS}
    assert hub.hub.stop("writer", signal.SIGKILL) == -signal.SIGKILL
    time.sleep(8 * INTERVAL_S)
    hub.hub.start("writer")
    wait_until(
        lambda: all(hub.stored_ticks(h) >= before[h] + 12 for h in HOSTS),
        30,
        "the restarted writer to store ticks of both hosts",
        hub.hub,
    )

    # Sampler b stops: b goes stale with its last tick's time; its GPUs stay; a goes on.
    assert hub.samplers["b"].stop("sampler") == 0
    b_ticks = published_ticks(hub.samplers["b"])
    wait_until(lambda: hub.stored_ticks("b") == b_ticks, 20, "b's last tick stored", hub.hub)
    ((b_last_ts,),) = hub.hub.query("SELECT max(ts) FROM readings WHERE host = 'b'")
    wait_until(lambda: hub.hosts()["b"]["stale"], 30, "b to be shown stale", hub.hub)
    a_stored = hub.stored_ticks("a")
    hosts = hub.hosts()
    assert hosts["b"]["last_seen_ts"] == b_last_ts and hosts["b"]["gpu_count"] == 2
    assert hosts["a"]["stale"] is False and hosts["a"]["last_seen_ts"] > b_last_ts
    gpus = hub.api("/api/v1/gpus")["gpus"]
    assert [
        (g["host"], g["host_stale"], g["host_last_seen_ts"]) for g in gpus if g["host"] == "b"
    ] == [
        ("b", True, b_last_ts),
        ("b", True, b_last_ts),
    ]
    assert all(not g["host_stale"] for g in gpus if g["host"] == "a")
    wait_until(lambda: hub.stored_ticks("a") > a_stored, 10, "a to go on", hub.hub)

    # History of host a: only a's GPUs; an unknown host is a 404.
    now_s = time.time()
    history = hub.api(f"/api/v1/history?host=a&from={now_s - 600:.0f}&to={now_s:.0f}")
    assert [(s["host"], s["gpu_index"]) for s in history["series"]] == [("a", 0), ("a", 1)]
    with pytest.raises(urllib.error.HTTPError) as refused:
        hub.api("/api/v1/history?host=c")
    assert refused.value.code == 404

    # Nothing lost from either host: every tick each sampler published is stored once per GPU.
    assert hub.samplers["a"].stop("sampler") == 0
    a_ticks = published_ticks(hub.samplers["a"])
    wait_until(lambda: hub.stored_ticks("a") == a_ticks, 20, "a's last tick stored", hub.hub)
    assert hub.hub.stop("writer") == 0
    logs = hub.hub.logs()
    stored = hub.stored_per_gpu()
    published = {"a": a_ticks, "b": b_ticks}
    assert sorted(host for host, _, _ in stored.values()) == ["a", "a", "b", "b"]
    for uuid, (host, count, distinct) in stored.items():
        assert (count, distinct) == (published[host], published[host]), (uuid, logs[-3000:])
    for sampler in hub.samplers.values():
        assert f"asking {sampler.env['PCW_PUB_ENDPOINT']}" in logs, (
            "each host's gap was asked of it"
        )
    status = read_status(hub.hub.db_path)
    assert status is not None and (status.lost_ticks, status.replay_gaps) == (0, 0)
