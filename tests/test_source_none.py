"""A hub without GPUs (PCW_SOURCE=none) under supervisord, fed by one sampler on another host.

The hub runs all three programs from supervisord.conf, as its container does: its own sampler
reads and publishes nothing but stays up, and its writer and web store and show the other host.
"""

from __future__ import annotations

import json
import re
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import pytest

from tests.stack import Stack, accepts_connections, http_status, process_age_s, wait_until

REMOTE = "gpunode"
HUB = "hub"
SIM_GPUS = 2


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def get_text(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


@pytest.fixture
def stacks(tmp_path: Path) -> Iterator[tuple[Stack, Stack]]:
    """Return (the remote sampler alone, the supervised hub subscribed to it)."""
    with ExitStack() as stack:
        folder = tmp_path / "remote"
        folder.mkdir()
        env = {"PCW_HOST_NAME": REMOTE, "PCW_SIM_GPUS": str(SIM_GPUS), "PCW_INTERVAL_S": "0.5"}
        remote = stack.enter_context(Stack(folder, env, supervised=False, programs=("sampler",)))
        folder = tmp_path / "hub"
        folder.mkdir()
        env = {
            "PCW_SOURCE": "none",
            "PCW_SUBSCRIBE": remote.env["PCW_PUB_ENDPOINT"],
            "PCW_HOST_NAME": HUB,
            "PCW_INTERVAL_S": "60",
        }
        hub = stack.enter_context(Stack(folder, env))
        yield remote, hub


def test_a_hub_without_gpus_stores_and_shows_the_remote_gpus_only(stacks: tuple[Stack, Stack]):
    remote, hub = stacks
    hub.wait_web()
    hub.wait_ticks(4)
    sampler_pid = hub.pid_of("sampler")
    # up past supervisord's startsecs (2 s): supervisord calls it running, and it stays so
    wait_until(lambda: process_age_s(sampler_pid) > 3, 30, "the sampler up for 3 s", hub)

    # The API lists the remote host's GPUs, and nothing of the hub's own; not "simulated": the
    # hub reads no GPU itself, simulated or not.
    body = get_json(hub.web_url + "/api/v1/gpus")
    assert [(gpu["host"], gpu["gpu_index"]) for gpu in body["gpus"]] == [
        (REMOTE, index) for index in range(SIM_GPUS)
    ]
    assert all(gpu["latest"] is not None and not gpu["host_stale"] for gpu in body["gpus"])
    assert body["simulated"] is False
    assert [entry["host"] for entry in get_json(hub.web_url + "/api/v1/hosts")["hosts"]] == [REMOTE]
    assert hub.query("SELECT DISTINCT host FROM readings") == [(REMOTE,)]
    page = get_text(hub.web_url + "/")
    config = json.loads(re.search(r'id="pcw-config">(.*?)</script>', page).group(1))
    assert config["simulated"] is False

    # Healthy on the remote ticks alone: the hub expects none of its own.
    assert http_status(hub.web_url + "/healthz") == 200
    health = get_json(hub.web_url + "/healthz")
    assert health["status"] == "ok" and health["problems"] == []

    # The hub's sampler publishes nothing (its endpoint is not even bound), says so once, and
    # stays up: supervisord neither restarts it nor gives up on it.
    assert not accepts_connections(hub.env["PCW_PUB_ENDPOINT"])
    hub.wait_ticks(hub.stored_ticks() + 4)
    wait_until(lambda: process_age_s(sampler_pid) > 6, 30, "the sampler up for 6 s", hub)
    assert hub.pid_of("sampler") == sampler_pid
    logs = hub.logs()
    assert logs.count("PCW_SOURCE=none: this host's GPUs are not read") == 1, logs[-4000:]
    assert "exited: sampler" not in logs and "FATAL" not in logs, logs[-4000:]

    # Stopped with the others, it exits cleanly.
    assert hub.terminate()["supervisord"] == 0
    logs = hub.logs()
    for name in ("writer", "sampler", "web"):
        assert f"stopped: {name} (exit status 0)" in logs, logs[-4000:]
    assert remote.processes["sampler"].poll() is None
