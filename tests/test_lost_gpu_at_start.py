"""A GPU that fell off the bus before the sampler started is shown in error everywhere.

The real stack (sampler, writer, web) over ZeroMQ and SQLite, on two simulated GPUs, GPU 1 lost
before the start (PCW_SIM_LOST_GPUS): NVML gives its PCI bus id and nothing else. It must be in
every tick as a GPU in error, in /api/v1/gpus with its error, make /healthz degraded, and send
no series to Prometheus, while GPU 0 goes on as usual.
"""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

from common.messages import Tick
from services.sampler.simulated_nvml import SimulatedNvml
from tests.stack import Stack, listen_ticks, wait_until

HOST = "lost-at-start"


def get(stack: Stack, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(stack.web_url + path, timeout=10) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def test_a_gpu_lost_before_the_start_is_in_error_in_ticks_api_healthz_and_metrics(tmp_path):
    devices = SimulatedNvml(2, host=HOST).devices
    env = {
        "PCW_SIM_GPUS": "2",
        "PCW_SIM_LOST_GPUS": "1",
        "PCW_INTERVAL_S": "1",
        "PCW_HOST_NAME": HOST,
    }
    seen: list[Tick] = []
    stop = threading.Event()
    with Stack(tmp_path, env, supervised=False) as stack:
        listener = threading.Thread(
            target=listen_ticks, args=(stack.env["PCW_PUB_ENDPOINT"], seen, stop), daemon=True
        )
        listener.start()
        stack.wait_web(60)

        def api_gpus() -> dict[int, dict]:
            status, body = get(stack, "/api/v1/gpus")
            assert status == 200
            return {gpu["gpu_index"]: gpu for gpu in json.loads(body)["gpus"]}

        def both_shown() -> bool:
            gpus = api_gpus()
            return all(gpus.get(i, {}).get("latest") for i in (0, 1))

        wait_until(both_shown, 60, "both GPUs in /api/v1/gpus", stack)
        wait_until(lambda: len(seen) >= 3, 60, "three ticks on the wire", stack)
        # /metrics speaks of the live feed only: wait until the web has a tick of its own
        wait_until(
            lambda: f'UUID="{devices[0].uuid}"' in get(stack, "/metrics")[1].decode(),
            60,
            "GPU 0's series in /metrics",
            stack,
        )
        gpus = api_gpus()
        health_status, health_body = get(stack, "/healthz")
        _, metrics = get(stack, "/metrics")
        stop.set()
        listener.join(5)

    # every tick holds GPU 1, in error, with its PCI bus id and a stable stand-in key
    for tick in seen:
        assert [gpu.index for gpu in tick.gpus] == [0, 1]
        ok, lost = tick.gpus
        assert ok.error is None and ok.uuid == devices[0].uuid and ok.util_gpu_pct is not None
        assert lost.error is not None and "lost" in lost.error.lower()
        assert lost.pci_bus_id == devices[1].pci_bus_id
        assert lost.uuid.startswith("unread-") and lost.uuid != devices[1].uuid
        assert lost.mem_used_bytes is None and lost.util_gpu_pct is None
    lost_uuid = seen[0].gpus[1].uuid
    assert {tick.gpus[1].uuid for tick in seen} == {lost_uuid}

    # the API shows it in error, not a reading with error: null
    shown = gpus[1]
    assert shown["gpu_uuid"] == lost_uuid and shown["pci_bus_id"] == devices[1].pci_bus_id
    assert "lost" in shown["latest"]["error"].lower()
    assert shown["latest"]["util_gpu_pct"] is None and shown["error_since_ts"] is not None
    assert gpus[0]["latest"]["error"] is None

    # /healthz is degraded and names it
    health = json.loads(health_body)
    assert health["status"] == "degraded", health
    assert health_status == 200 or health_status >= 500
    assert [(e["gpu_index"], e["gpu_uuid"]) for e in health["gpu_errors"]] == [(1, lost_uuid)]

    # Prometheus gets GPU 0's series and none of GPU 1's, but for its gpu_error alert
    text = metrics.decode()
    assert f'UUID="{devices[0].uuid}"' in text
    naming_it = [line for line in text.splitlines() if lost_uuid in line]
    assert devices[1].pci_bus_id not in text
    assert all(line.startswith("pycudawatch_alert{") for line in naming_it), naming_it
    assert all('rule="gpu_error"' in line for line in naming_it), naming_it

    # the writer stored its errored readings like any other
    rows = stack.query(
        "SELECT count(*), count(error), count(util_gpu_pct) FROM readings WHERE gpu_uuid = ?",
        (lost_uuid,),
    )
    assert rows[0][0] >= 1 and rows[0][1] == rows[0][0] and rows[0][2] == 0
