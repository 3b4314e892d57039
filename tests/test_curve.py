"""CURVE between samplers and the hub, the plaintext guard and the key command: real processes."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
import zmq
import zmq.auth

from services.transport.curve import SamplerGate, is_loopback_endpoint
from services.transport.keygen import create_pair
from tests.stack import (
    REPO,
    Stack,
    accepts_connections,
    free_port,
    run_service,
    stack_env,
    wait_until,
)

START_TIMEOUT_S = 60.0


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Key pairs for a hub, a listed sampler and an unlisted one; the hub's folder of accepted."""
    made = tmp_path / "keys"
    accepted = tmp_path / "accepted"
    made.mkdir()
    accepted.mkdir()
    paths: dict[str, Path] = {"accepted": accepted}
    for name in ("hub", "node", "rogue"):
        public, secret = create_pair(name, made)
        paths[name], paths[f"{name}_secret"] = public, secret
    shutil.copy(paths["node"], accepted)
    return paths


def hub_env(keys: dict[str, Path], subscribe: str) -> dict[str, str]:
    """Return the settings of a hub (writer, web) that accepts the keys in keys["accepted"]."""
    return {
        "PCW_SUBSCRIBE": subscribe,
        "PCW_CURVE_SECRET_KEY_FILE": str(keys["hub_secret"]),
        "PCW_CURVE_SAMPLER_KEYS_DIR": str(keys["accepted"]),
    }


def node_env(keys: dict[str, Path], name: str, endpoint: str, host: str) -> dict[str, str]:
    """Return the settings of a sampler with key pair `name` that talks to the hub's key."""
    return {
        "PCW_PUB_ENDPOINT": endpoint,
        "PCW_HOST_NAME": host,
        "PCW_CURVE_SECRET_KEY_FILE": str(keys[f"{name}_secret"]),
        "PCW_CURVE_HUB_KEY_FILE": str(keys["hub"]),
    }


def endpoint() -> str:
    """Return a free sampler endpoint on loopback (two ports: ticks and replays)."""
    return f"tcp://127.0.0.1:{free_port(consecutive=2)}"


def part(tmp_path: Path, name: str, env: dict[str, str], programs: tuple[str, ...]) -> Stack:
    """Return an unsupervised stack of some programs, in its own folder under tmp_path."""
    (tmp_path / name).mkdir()
    return Stack(tmp_path / name, env=env, supervised=False, programs=programs)


def stored_hosts(stack: Stack) -> set[str]:
    """Return the hosts with at least one stored reading."""
    if stack.stored_ticks() == 0:
        return set()
    rows = stack.query("SELECT DISTINCT g.host FROM samples s JOIN gpus g USING (gpu_id)")
    return {row[0] for row in rows}


async def live_hosts(web_url: str) -> set[str]:
    """Return the hosts in the web process's websocket snapshot (the live feed's ticks)."""
    ws_url = web_url.replace("http://", "ws://") + "/ws"
    async with aiohttp.ClientSession() as session, session.ws_connect(ws_url) as ws:
        message = json.loads((await ws.receive(timeout=10)).data)
    assert message["type"] == "snapshot"
    return {tick["host"] for tick in message["ticks"]}


def test_listed_sampler_is_stored_and_live_and_unreadable_to_an_eavesdropper(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    node_endpoint = endpoint()
    node = part(tmp_path, "node", node_env(keys, "node", node_endpoint, "node"), ("sampler",))
    hub = part(tmp_path, "hub", hub_env(keys, node_endpoint), ("writer", "web"))
    with node, hub:
        hub.wait_ticks(3, timeout_s=START_TIMEOUT_S)
        assert stored_hosts(hub) == {"node"}
        hub.wait_web()
        wait_until(lambda: asyncio.run(live_hosts(hub.web_url)) == {"node"}, 30, "a live tick", hub)
        # Without the hub's secret key, a subscriber on the same port reads nothing.
        with zmq.Context() as context, context.socket(zmq.SUB) as eavesdropper:
            eavesdropper.setsockopt(zmq.LINGER, 0)
            eavesdropper.setsockopt(zmq.SUBSCRIBE, b"")
            eavesdropper.connect(node_endpoint)
            before = hub.stored_ticks()
            wait_until(lambda: hub.stored_ticks() >= before + 2, 30, "two more ticks", hub)
            assert eavesdropper.poll(0) == 0
        assert "CURVE on: accepting 1 sampler key(s)" in hub.logs()
        assert "(simulated, CURVE)" in node.logs()


def test_unlisted_sampler_sends_nothing_that_is_stored(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    node_endpoint, rogue_endpoint = endpoint(), endpoint()
    node = part(tmp_path, "node", node_env(keys, "node", node_endpoint, "node"), ("sampler",))
    rogue = part(tmp_path, "rogue", node_env(keys, "rogue", rogue_endpoint, "rogue"), ("sampler",))
    hub = part(
        tmp_path, "hub", hub_env(keys, f"{node_endpoint},{rogue_endpoint}"), ("writer", "web")
    )
    with node, rogue, hub:
        # The writer and the web process each refuse the rogue key, and say which it was.
        rogue_key = zmq.auth.load_certificate(keys["rogue"])[0].decode()
        wait_until(
            lambda: hub.logs().count(f"public key {rogue_key} is not in") >= 2,
            START_TIMEOUT_S,
            "both hub processes to refuse the rogue key",
            hub,
        )
        before = hub.stored_ticks()
        wait_until(lambda: hub.stored_ticks() >= before + 3, 30, "three more ticks", hub)
        assert stored_hosts(hub) == {"node"}
        assert asyncio.run(live_hosts(hub.web_url)) == {"node"}
        assert {row[0] for row in hub.query("SELECT DISTINCT host FROM gpus")} == {"node"}


def test_a_key_copied_to_the_folder_later_is_accepted_without_a_restart(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    rogue_endpoint = endpoint()
    rogue = part(tmp_path, "rogue", node_env(keys, "rogue", rogue_endpoint, "late"), ("sampler",))
    hub = part(tmp_path, "hub", hub_env(keys, rogue_endpoint), ("writer",))
    with rogue, hub:
        wait_until(lambda: "is not in" in hub.logs(), START_TIMEOUT_S, "a refusal", hub)
        assert hub.stored_ticks() == 0
        shutil.copy(keys["rogue"], keys["accepted"])
        hub.wait_ticks(2, timeout_s=30)
        assert stored_hosts(hub) == {"late"}


def test_a_key_removed_from_the_folder_is_refused_from_the_next_connection(
    tmp_path: Path, keys: dict[str, Path]
) -> None:
    shutil.copy(keys["rogue"], keys["accepted"])  # listed at first
    node_endpoint, rogue_endpoint = endpoint(), endpoint()
    node = part(tmp_path, "node", node_env(keys, "node", node_endpoint, "node"), ("sampler",))
    rogue = part(tmp_path, "rogue", node_env(keys, "rogue", rogue_endpoint, "rogue"), ("sampler",))
    hub = part(tmp_path, "hub", hub_env(keys, f"{node_endpoint},{rogue_endpoint}"), ("writer",))
    with node, rogue, hub:
        wait_until(
            lambda: stored_hosts(hub) == {"node", "rogue"}, START_TIMEOUT_S, "both hosts", hub
        )
        (keys["accepted"] / keys["rogue"].name).unlink()  # revoked
        rogue.stop("sampler")
        rogue.env["PCW_HOST_NAME"] = "revoked"
        rogue.start("sampler")  # the hub connects again: a new handshake
        wait_until(
            lambda: accepts_connections(rogue_endpoint), START_TIMEOUT_S, "the sampler again", rogue
        )
        # The hub retries its connection every 0.1 s; three ticks later it has long been refused.
        before = hub.stored_ticks()
        wait_until(lambda: hub.stored_ticks() >= before + 3, 30, "three more ticks", hub)
        assert stored_hosts(hub) == {"node", "rogue"}
        rogue_key = zmq.auth.load_certificate(keys["rogue"])[0].decode()
        assert f"public key {rogue_key} is not in" in hub.logs()


def test_the_gate_follows_a_replaced_or_removed_certificate(keys: dict[str, Path]) -> None:
    # Each handshake follows the folder as it is now, however soon after the last one; the
    # files are an hour old, so only a real change (not the time of the read) makes it re-read.
    for certificate in keys["accepted"].iterdir():
        hour_ago_s = time.time() - 3600
        os.utime(certificate, (hour_ago_s, hour_ago_s))
    node_key = zmq.auth.load_certificate(keys["node"])[0]
    rogue_key = zmq.auth.load_certificate(keys["rogue"])[0]
    listed = keys["accepted"] / keys["node"].name
    sampler_gate = SamplerGate(keys["accepted"])
    assert sampler_gate.callback("", node_key)
    assert not sampler_gate.callback("", rogue_key)
    shutil.copy(keys["rogue"], listed)  # node.key now holds the rogue's public key, same size
    assert sampler_gate.callback("", rogue_key)
    assert not sampler_gate.callback("", node_key)
    listed.unlink()
    assert not sampler_gate.callback("", rogue_key)
    assert sampler_gate.refused == 3


def test_a_revoked_key_reconnecting_at_once_is_refused(keys: dict[str, Path]) -> None:
    rogue_key = zmq.auth.load_certificate(keys["rogue"])[0]
    listed = keys["accepted"] / keys["rogue"].name
    shutil.copy(keys["rogue"], listed)
    sampler_gate = SamplerGate(keys["accepted"])
    assert sampler_gate.callback("", rogue_key)
    listed.unlink()  # revoked, then the sampler reconnects within the same second
    assert not sampler_gate.callback("", rogue_key)
    shutil.copy(keys["rogue"], listed)  # and listed again: let in from its next connection
    assert sampler_gate.callback("", rogue_key)


@pytest.mark.parametrize("address", ["0.0.0.0", "*", "192.0.2.1", "gpu-node-7"])
def test_plaintext_bind_off_loopback_is_refused(tmp_path: Path, address: str) -> None:
    port = free_port(consecutive=2)
    env = stack_env(tmp_path, {"PCW_PUB_ENDPOINT": f"tcp://{address}:{port}"})
    result = run_service("sampler", env, START_TIMEOUT_S)
    assert result.returncode == 2
    refusal = [line for line in result.stderr.splitlines() if "refusing to publish" in line]
    assert len(refusal) == 1, result.stderr
    for named in ("PCW_ALLOW_PLAINTEXT=1", "PCW_CURVE_SECRET_KEY_FILE", "PCW_CURVE_HUB_KEY_FILE"):
        assert named in refusal[0]


def test_plaintext_on_all_addresses_with_the_override_is_stored(tmp_path: Path) -> None:
    port = free_port(consecutive=2)
    env = {
        "PCW_PUB_ENDPOINT": f"tcp://0.0.0.0:{port}",
        "PCW_SUBSCRIBE": f"tcp://127.0.0.1:{port}",
        "PCW_ALLOW_PLAINTEXT": "1",
    }
    with Stack(tmp_path, env=env, supervised=False, programs=("writer", "sampler")) as stack:
        stack.wait_ticks(2, timeout_s=START_TIMEOUT_S)
        assert "UNENCRYPTED" in stack.logs()


@pytest.mark.parametrize(
    ("program", "settings", "named"),
    [
        ("sampler", {"PCW_CURVE_SECRET_KEY_FILE": "node_secret"}, "PCW_CURVE_HUB_KEY_FILE"),
        ("sampler", {"PCW_CURVE_HUB_KEY_FILE": "hub"}, "PCW_CURVE_SECRET_KEY_FILE"),
        (
            "sampler",
            {"PCW_CURVE_SECRET_KEY_FILE": "node", "PCW_CURVE_HUB_KEY_FILE": "hub"},
            "PCW_CURVE_SECRET_KEY_FILE",  # a public certificate given as the secret one
        ),
        ("writer", {"PCW_CURVE_SECRET_KEY_FILE": "hub_secret"}, "PCW_CURVE_SAMPLER_KEYS_DIR"),
        ("web", {"PCW_CURVE_SECRET_KEY_FILE": "hub_secret"}, "PCW_CURVE_SAMPLER_KEYS_DIR"),
        ("writer", {"PCW_CURVE_SAMPLER_KEYS_DIR": "accepted"}, "PCW_CURVE_SECRET_KEY_FILE"),
    ],
)
def test_half_set_keys_refuse_to_start_naming_the_setting(
    tmp_path: Path, keys: dict[str, Path], program: str, settings: dict[str, str], named: str
) -> None:
    env = stack_env(tmp_path, {name: str(keys[key]) for name, key in settings.items()})
    result = run_service(program, env, START_TIMEOUT_S)
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1, result.stderr
    assert named in lines[0]


def test_keygen_writes_a_private_secret_and_never_overwrites(tmp_path: Path) -> None:
    command = [sys.executable, "-m", "services.keygen", "node-1", "--dir", str(tmp_path)]
    first = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert first.returncode == 0, first.stderr
    public, secret = tmp_path / "node-1.key", tmp_path / "node-1.key_secret"
    assert secret.stat().st_mode & 0o777 == 0o600
    public_key, no_secret = zmq.auth.load_certificate(public)
    same_public, secret_key = zmq.auth.load_certificate(secret)
    assert no_secret is None and secret_key is not None and same_public == public_key
    assert zmq.curve_public(secret_key) == public_key
    assert sorted(p.name for p in tmp_path.iterdir()) == ["node-1.key", "node-1.key_secret"]

    secret_text = secret.read_text()
    again = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert again.returncode == 1
    assert "exists already" in again.stderr
    assert secret.read_text() == secret_text


@pytest.mark.parametrize(
    ("bind", "local"),
    [
        ("tcp://127.0.0.1:5556", True),
        ("tcp://127.8.9.10:5556", True),
        ("tcp://[::1]:5556", True),
        ("tcp://localhost:5556", True),
        ("ipc:///tmp/pcw.sock", True),
        ("tcp://0.0.0.0:5556", False),
        ("tcp://*:5556", False),
        ("tcp://[::]:5556", False),
        ("tcp://10.0.0.5:5556", False),
        ("tcp://eth0:5556", False),
        ("tcp://gpu-node.example:5556", False),
    ],
)
def test_loopback_endpoints(bind: str, local: bool) -> None:
    assert is_loopback_endpoint(bind) is local
