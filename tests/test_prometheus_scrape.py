"""A real Prometheus (Debian's `prometheus` binary) scrapes the web process of a real stack."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from services.web.auth import hash_password
from tests.stack import Stack, free_port, http_status, wait_until

SIM_GPUS = 3
STOP_TIMEOUT_S = 20.0
DCGM_LABELS = ("gpu", "UUID", "pci_bus_id", "device", "modelName", "Hostname", "hostname")


def scrape_job(name: str, stack: Stack, **settings: object) -> dict:
    """Return a scrape job aimed at the stack's web process, with more Prometheus settings."""
    target = stack.web_url.removeprefix("http://")
    return {"job_name": name, "static_configs": [{"targets": [target]}], **settings}


@contextmanager
def prometheus(tmp_path: Path, jobs: list[dict], stack: Stack) -> Iterator[str]:
    """Run Prometheus on a free loopback port, scraping every second; yield its URL; stop it."""
    config_path = tmp_path / "prometheus.yml"
    config = {"global": {"scrape_interval": "1s", "scrape_timeout": "1s"}, "scrape_configs": jobs}
    config_path.write_text(json.dumps(config))  # JSON is YAML: no YAML library needed
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = (tmp_path / "prometheus.log").open("wb")
    process = subprocess.Popen(
        [
            "prometheus",
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'prometheus-data'}",
            f"--web.listen-address=127.0.0.1:{port}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_until(lambda: http_status(url + "/-/ready") == 200, 60.0, "Prometheus ready", stack)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def query(prometheus_url: str, promql: str) -> list[dict]:
    """Return the result vector of an instant query through Prometheus's HTTP API."""
    address = f"{prometheus_url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(address, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]["result"]


def wait_series(url: str, job: str, stack: Stack) -> list[dict]:
    """Wait until Prometheus holds a DCGM_FI_DEV_GPU_UTIL series per GPU from job; return them."""
    promql = f'DCGM_FI_DEV_GPU_UTIL{{job="{job}"}}'
    what = f"{SIM_GPUS} series of {promql} in Prometheus"
    wait_until(lambda: len(query(url, promql)) == SIM_GPUS, 60.0, what, stack)
    return query(url, promql)


def gpus_of(stack: Stack, headers: dict[str, str] | None = None) -> list[dict]:
    request = urllib.request.Request(stack.web_url + "/api/v1/gpus", headers=headers or {})
    with urllib.request.urlopen(request, timeout=5) as response:
        return json.load(response)["gpus"]


def test_prometheus_scrapes_one_series_per_simulated_gpu(tmp_path):
    with Stack(tmp_path, {"PCW_SIM_GPUS": str(SIM_GPUS)}) as stack:
        stack.wait_web()
        with prometheus(tmp_path, [scrape_job("pycudawatch", stack)], stack) as url:
            series = wait_series(url, "pycudawatch", stack)
            [up] = query(url, 'up{job="pycudawatch"}')
            energy = query(url, "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION")
        gpus = gpus_of(stack)

    assert up["value"][1] == "1"
    assert_dcgm_series(series, gpus)
    # dcgm-exporter's series name, unchanged, is what a DCGM dashboard finds in Prometheus
    assert {entry["metric"]["UUID"] for entry in energy} == {gpu["gpu_uuid"] for gpu in gpus}


def test_prometheus_scrapes_with_basic_auth_and_is_refused_without(tmp_path):
    (tmp_path / "auth").write_text(f"prometheus:{hash_password('s3cret pass')}\n")
    (tmp_path / "password").write_text("s3cret pass")
    env = {"PCW_SIM_GPUS": str(SIM_GPUS), "PCW_AUTH_FILE": str(tmp_path / "auth")}
    with Stack(tmp_path, env) as stack:
        stack.wait_web()
        signed_in = {"username": "prometheus", "password_file": str(tmp_path / "password")}
        jobs = [
            scrape_job("signed-in", stack, basic_auth=signed_in),
            scrape_job("anonymous", stack),
        ]
        with prometheus(tmp_path, jobs, stack) as url:
            series = wait_series(url, "signed-in", stack)
            wait_until(lambda: query(url, 'up{job="anonymous"}'), 60.0, "a refused scrape", stack)
            [anonymous_up] = query(url, 'up{job="anonymous"}')
            anonymous_series = query(url, 'DCGM_FI_DEV_GPU_UTIL{job="anonymous"}')
        token = base64.b64encode(b"prometheus:s3cret pass").decode()
        gpus = gpus_of(stack, {"Authorization": f"Basic {token}"})
        refused = http_status(stack.web_url + "/metrics")

    assert_dcgm_series(series, gpus)
    assert refused == 401
    assert anonymous_up["value"][1] == "0" and anonymous_series == []


def assert_dcgm_series(series: list[dict], gpus: list[dict]) -> None:
    """Assert one DCGM_FI_DEV_GPU_UTIL series per GPU of /api/v1/gpus, with dcgm's labels."""
    expected = {
        gpu["gpu_uuid"]: {
            "gpu": str(gpu["gpu_index"]),
            "UUID": gpu["gpu_uuid"],
            "pci_bus_id": gpu["pci_bus_id"],
            "device": f"nvidia{gpu['gpu_index']}",
            "modelName": gpu["gpu_name"],
            "Hostname": "testhost",
            "hostname": "testhost",
        }
        for gpu in gpus
    }
    assert len(expected) == SIM_GPUS
    by_uuid = {entry["metric"]["UUID"]: entry for entry in series}
    assert set(by_uuid) == set(expected)
    for uuid, entry in by_uuid.items():
        labels = entry["metric"]
        assert {name: labels[name] for name in DCGM_LABELS} == expected[uuid]
        assert labels["__name__"] == "DCGM_FI_DEV_GPU_UTIL"
        assert 0 <= float(entry["value"][1]) <= 100
