"""Processes, usage, energy, MIG and the idle flag through the real stack on simulated GPUs.

Sampler -> ZeroMQ -> writer -> SQLite -> web, each a real process. Four simulated GPUs: 0 runs
a training job named with HTML, 1 an evaluation job whose PID is of another namespace (not
visible), 2 is in MIG mode, 3 is held idle by carol's forgotten notebook. The simulated load is a
deterministic function of the host name and the time, so the test picks a host name whose GPUs 0
and 1 are at those points of their cycles for the next minutes.
"""

from __future__ import annotations

import json
import time
import urllib.request
from collections import defaultdict
from pathlib import Path

import pytest

from services.sampler.simulated_nvml import SimulatedNvml
from services.web.usage import union_s
from tests.stack import Stack, wait_until

HTML_NAME = "<b>tr&ain</b>"  # under the kernel's 15 characters of comm
INTERVAL_S = 0.5
IDLE_AFTER_S = 2.0
WINDOW_S = 240.0  # how long the chosen host's GPUs must stay where the test needs them
USERS = {"alice", "bob", "carol", "uid 1004"}


def jobs_at(host: str, t_s: float) -> tuple[list, list]:
    """Return the simulated processes of GPUs 0 and 1 of host at time t_s."""
    nvml = SimulatedNvml(4, host=host, clock=lambda: t_s, mig_gpus=(2,), idle_gpus=(3,))
    return nvml.processes(nvml.devices[0]), nvml.processes(nvml.devices[1])


def wanted_now(host: str, t_s: float) -> bool:
    """Return whether GPU 0 trains and GPU 1 evaluates with a hidden PID at t_s."""
    gpu0, gpu1 = jobs_at(host, t_s)
    return bool(gpu0) and any(not process.visible for process in gpu1)


def choose_host(now_s: float) -> str:
    """Return a host name whose GPUs stay as the test needs them for WINDOW_S from now_s.

    Each phase of the cycle is one stretch of time and the cycle is longer than the window, so
    holding at both ends means holding throughout.
    """
    for number in range(10_000):
        host = f"lab{number}"
        if wanted_now(host, now_s) and wanted_now(host, now_s + WINDOW_S):
            return host
    raise AssertionError("no host name puts the simulated GPUs where the test needs them")


def get_json(stack: Stack, path: str) -> dict:
    with urllib.request.urlopen(stack.web_url + path, timeout=10) as response:
        assert response.status == 200
        return json.loads(response.read())


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory):
    """Run the stack until GPU 3 is flagged idle, then stop the sampler and let the writer flush.

    Yields the stack and every /api/v1/gpus answer seen for GPU 3 while waiting.
    """
    tmp_path: Path = tmp_path_factory.mktemp("pipeline")
    env = {
        "PCW_SIM_GPUS": "4",
        "PCW_SIM_MIG_GPUS": "2",
        "PCW_SIM_IDLE_GPUS": "3",
        "PCW_SIM_PROCESS_NAMES": HTML_NAME,
        "PCW_INTERVAL_S": str(INTERVAL_S),
        "PCW_IDLE_AFTER_S": str(IDLE_AFTER_S),
        "PCW_HOST_NAME": choose_host(time.time()),
    }
    with Stack(tmp_path, env, supervised=False) as running:
        running.wait_web(60)
        seen: list[dict] = []

        def flagged() -> bool:
            gpus = get_json(running, "/api/v1/gpus")["gpus"]
            entry = next((gpu for gpu in gpus if gpu["gpu_index"] == 3), None)
            if entry is None or entry["latest"] is None:
                return False
            seen.append(entry)
            return entry["idle"] is not None

        wait_until(flagged, 60, "GPU 3 flagged idle", running)
        running.wait_ticks(8)
        assert running.stop("sampler") == 0

        def flushed() -> bool:  # the file holds the feed's last tick
            gpus = get_json(running, "/api/v1/gpus")["gpus"]
            newest = max(gpu["latest"]["ts"] for gpu in gpus)
            return running.query("SELECT max(ts) FROM readings")[0][0] == newest

        wait_until(flushed, 30, "the writer to store the last tick", running)
        yield running, seen


def gpus_by_index(stack: Stack) -> dict[int, dict]:
    return {gpu["gpu_index"]: gpu for gpu in get_json(stack, "/api/v1/gpus")["gpus"]}


def test_processes_show_names_users_containers_and_the_hidden_pid(stack):
    running, _seen = stack
    gpus = gpus_by_index(running)
    train = get_json(running, f"/api/v1/processes?gpu={gpus[0]['gpu_uuid']}")
    [job] = [p for p in train["processes"] if p["name"] == HTML_NAME]
    assert job["visible"] is True and job["user"] in USERS
    assert job["cmdline"].startswith(f"{HTML_NAME} --gpu 0")
    assert len(job["container_id"]) == 64  # GPU 0's job runs in a Docker container
    assert job["since_ts"] <= train["ts"]
    evaluated = get_json(running, f"/api/v1/processes?gpu={gpus[1]['gpu_uuid']}")["processes"]
    hidden = [p for p in evaluated if not p["visible"]]
    assert len(hidden) == 1
    assert hidden[0]["pid"] > 0 and hidden[0]["used_mem_bytes"] > 0
    assert (hidden[0]["name"], hidden[0]["user"], hidden[0]["cmdline"]) == (None, None, None)
    assert any(p["visible"] and p["user"] in USERS for p in evaluated)


def test_the_mig_gpu_lists_its_devices_with_utilization_not_available(stack):
    running, _seen = stack
    mig = gpus_by_index(running)[2]
    assert len(mig["mig_devices"]) == 3
    assert all(device["util_gpu_pct"] is None for device in mig["mig_devices"])
    assert all(device["mem_total_bytes"] > 0 for device in mig["mig_devices"])
    assert sum(d["mem_total_bytes"] for d in mig["mig_devices"]) < mig["latest"]["mem_total_bytes"]
    assert mig["latest"]["util_gpu_pct"] is None


def test_the_idle_gpu_is_flagged_after_the_duration_with_carols_notebook(stack):
    running, seen = stack
    first_ts = running.query("SELECT min(ts) FROM readings WHERE gpu_index = 3")[0][0]
    for entry in seen:
        held_s = entry["latest"]["ts"] - first_ts
        if entry["idle"] is None:
            assert held_s < IDLE_AFTER_S + INTERVAL_S, entry  # not flagged late
        else:
            assert held_s >= IDLE_AFTER_S, entry  # never before the duration
    idle = gpus_by_index(running)[3]["idle"]
    assert idle["since_ts"] == first_ts  # the notebook held it from the first tick
    [notebook] = idle["processes"]
    assert notebook["user"] == "carol" and "ipykernel_launcher" in notebook["cmdline"]


def expected_usage(stack: Stack, by: str, from_s: float, to_s: float) -> dict:
    """Return {key: (gpu_hours, gpu_mem_gib_hours)} computed from the `processes` view."""
    interval_s = stack.query("SELECT max(interval_s) FROM gpus")[0][0]
    # a container is known by its name where knowable, else by its id
    column = {
        "user": "user",
        "process": "name",
        "container": "coalesce(container_name, container_id)",
    }[by]
    rows = stack.query(
        f"SELECT gpu_uuid, {column}, start_ts, end_ts, used_mem_bytes FROM processes"
    )
    times: dict = defaultdict(lambda: defaultdict(list))
    mem: dict = defaultdict(float)
    for uuid, key, start_ts, end_ts, used in rows:
        low, high = max(start_ts, from_s), min(end_ts + interval_s, to_s)
        if high > low:
            times[key][uuid].append((low, high))
            mem[key] += (used or 0) / (1 << 30) * (high - low)
    return {
        key: (sum(union_s(p) for p in per_gpu.values()) / 3600, mem[key] / 3600)
        for key, per_gpu in times.items()
    }


@pytest.mark.parametrize("by", ["user", "process", "container"])
def test_usage_matches_the_stored_spans(stack, by):
    running, _seen = stack
    first_ts, last_ts = running.query("SELECT min(ts), max(ts) FROM readings")[0]
    from_s, to_s = first_ts - 5, last_ts + 5
    body = get_json(running, f"/api/v1/usage?from={from_s}&to={to_s}&by={by}")
    got = {row["key"]: (row["gpu_hours"], row["gpu_mem_gib_hours"]) for row in body["rows"]}
    expected = expected_usage(running, by, from_s, to_s)
    assert set(got) == set(expected)
    for key, (hours, mem_hours) in expected.items():
        assert got[key] == (pytest.approx(hours), pytest.approx(mem_hours)), key
    # no key holds a GPU longer than the stored ticks cover, on all four GPUs at once; the
    # cover is from the first tick to one interval past the last, not ticks x interval, because
    # a loaded machine spaces ticks wider than the interval and a span rightly bridges the gap
    cover_s = (last_ts - first_ts) + INTERVAL_S
    assert all(hours <= 4 * cover_s / 3600 + 1e-9 for hours, _m in got.values())
    if by == "user":
        # carol's notebook: every tick on GPU 3, one unbroken span
        notebook_s = (last_ts - first_ts) + INTERVAL_S
        assert got["carol"][0] >= notebook_s / 3600 - 1e-9


def test_energy_comes_from_the_counter_and_matches_the_energy_view(stack):
    running, _seen = stack
    first_ts, last_ts = running.query("SELECT min(ts), max(ts) FROM readings")[0]
    body = get_json(running, f"/api/v1/energy?from={first_ts - 5}&to={last_ts + 5}")
    assert len(body["gpus"]) == 4
    stored = dict(
        running.query(
            "SELECT gpu_uuid, sum(delta_j) FROM energy WHERE ts BETWEEN ? AND ? GROUP BY gpu_uuid",
            (first_ts - 5, last_ts + 5),
        )
    )
    for gpu in body["gpus"]:
        assert gpu["source"] == "counter", gpu
        assert gpu["kwh"] > 0
        assert gpu["kwh"] == pytest.approx(stored[gpu["gpu_uuid"]] / 3.6e6)
    assert body["total_kwh"] == pytest.approx(sum(stored.values()) / 3.6e6)
    sources = {row[0] for row in running.query("SELECT DISTINCT source FROM energy")}
    assert "counter" in sources


def test_the_processes_view_holds_each_process_once_per_run(stack):
    running, _seen = stack
    rows = running.query(
        "SELECT gpu_index, pid, name, user, visible, min(start_ts), max(end_ts), count(*)"
        " FROM processes WHERE gpu_index = 3 GROUP BY pid"
    )
    [(index, pid, name, user, visible, start_ts, end_ts, _spans)] = rows
    assert (index, name, user, visible) == (3, "python", "carol", 1)
    first_ts, last_ts = running.query("SELECT min(ts), max(ts) FROM readings")[0]
    assert (start_ts, end_ts) == (first_ts, last_ts)
    identities = running.query("SELECT count(*) FROM proc_identities WHERE pid = ?", (pid,))
    assert identities == [(1,)]  # its name and command line stored once
