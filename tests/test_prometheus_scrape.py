"""A real Prometheus (Debian's `prometheus` binary) scrapes the web process of a real stack."""

from __future__ import annotations

import base64
import json
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from services.web.auth import hash_password
from tests.stack import Stack, free_port, http_status, wait_until
from tests.test_hub import Hub

SIM_GPUS = 3
ENERGY = "DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION"
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


def api(prometheus_url: str, path: str, **params: str) -> list[dict]:
    """Return the data of a call to Prometheus's HTTP API."""
    address = f"{prometheus_url}{path}?{urllib.parse.urlencode(params)}"
    with urllib.request.urlopen(address, timeout=5) as response:
        body = json.load(response)
    assert body["status"] == "success", body
    return body["data"]


def query(prometheus_url: str, promql: str) -> list[dict]:
    """Return the result vector of an instant query through Prometheus's HTTP API."""
    return api(prometheus_url, "/api/v1/query", query=promql)["result"]


def metric_types(prometheus_url: str, job: str, metric: str) -> set[str]:
    """Return the types Prometheus took from the job's targets for a metric."""
    found = api(
        prometheus_url,
        "/api/v1/targets/metadata",
        match_target=f'{{job="{job}"}}',
        metric=metric,
    )
    return {entry["type"] for entry in found}


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
            energy = query(url, ENERGY)
            wait_until(lambda: metric_types(url, "pycudawatch", ENERGY), 30, "its metadata", stack)
            energy_types = metric_types(url, "pycudawatch", ENERGY)
            util_types = metric_types(url, "pycudawatch", "DCGM_FI_DEV_GPU_UTIL")
        gpus = gpus_of(stack)

    assert up["value"][1] == "1"
    assert_dcgm_series(series, gpus)
    # dcgm-exporter's series name, unchanged, is what a DCGM dashboard finds in Prometheus,
    # and Prometheus took it as the counter dcgm-exporter declares it
    assert {entry["metric"]["UUID"] for entry in energy} == {gpu["gpu_uuid"] for gpu in gpus}
    assert {entry["metric"]["__name__"] for entry in energy} == {ENERGY}
    assert energy_types == {"counter"}
    assert util_types == {"gauge"}


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


# -- a hub's hosts as targets of their own (Prometheus' multi-target exporter pattern) ----------

HUB_HOSTS = ("gpu-node-1", "gpu-node-2")
HUB_GPUS_PER_HOST = 2


def per_host_job(name: str, hosts: list[str], hub_address: str) -> dict:
    """Return docs/prometheus.md's per-host job: host names as targets, relabelled onto the hub."""
    return {
        "job_name": name,
        "metrics_path": "/metrics",
        "static_configs": [{"targets": hosts}],
        "relabel_configs": [
            {"source_labels": ["__address__"], "target_label": "__param_host"},
            {"source_labels": ["__param_host"], "target_label": "instance"},
            {"target_label": "__address__", "replacement": hub_address},
        ],
    }


def hub_own_job(name: str, hub_address: str) -> dict:
    """Return docs/prometheus.md's job for the hub's own series (GPU series: per_host_job)."""
    return {
        "job_name": name,
        "static_configs": [{"targets": [hub_address]}],
        "metric_relabel_configs": [
            {"source_labels": ["__name__"], "regex": "DCGM_.*", "action": "drop"}
        ],
    }


def test_prometheus_scrapes_each_host_of_a_hub_as_its_own_instance(tmp_path):
    with ExitStack() as running:
        samplers = {}
        for host in HUB_HOSTS:
            env = {"PCW_HOST_NAME": host, "PCW_SIM_GPUS": str(HUB_GPUS_PER_HOST)}
            folder = tmp_path / host
            folder.mkdir()
            samplers[host] = running.enter_context(
                Stack(
                    folder, {**env, "PCW_INTERVAL_S": "1"}, supervised=False, programs=("sampler",)
                )
            )
        subscribe = ",".join(s.env["PCW_PUB_ENDPOINT"] for s in samplers.values())
        folder = tmp_path / "hub"
        folder.mkdir()
        hub_env = {"PCW_SUBSCRIBE": subscribe, "PCW_HOST_NAME": "hub", "PCW_INTERVAL_S": "1"}
        hub = Hub(
            samplers,
            running.enter_context(
                Stack(folder, hub_env, supervised=False, programs=("writer", "web"))
            ),
        )
        hub.hub.wait_web()
        wait_until(lambda: set(hub.hosts()) == set(HUB_HOSTS), 30, "both hosts", hub.hub)
        hub_address = hub.hub.web_url.removeprefix("http://")
        jobs = [
            per_host_job("gpu-hosts", [*HUB_HOSTS, "gpu-node-gone"], hub_address),
            hub_own_job("hub", hub_address),
        ]
        with prometheus(tmp_path, jobs, hub.hub) as url:
            promql = 'DCGM_FI_DEV_GPU_UTIL{job="gpu-hosts"}'
            count = len(HUB_HOSTS) * HUB_GPUS_PER_HOST
            wait_until(lambda: len(query(url, promql)) == count, 60, promql, hub.hub)
            series = query(url, promql)
            wait_until(lambda: len(query(url, 'up{job="gpu-hosts"}')) == 3, 60, "up", hub.hub)
            up = {e["metric"]["instance"]: e["value"][1] for e in query(url, 'up{job="gpu-hosts"}')}
            published = query(url, 'pycudawatch_ticks_published_total{job="gpu-hosts"}')
            hub_promql = 'pycudawatch_ticks_stored_total{job="hub"}'
            wait_until(lambda: query(url, hub_promql), 60, hub_promql, hub.hub)
            [hub_stored] = query(url, hub_promql)
            hub_gpu_series = query(url, '{job="hub", __name__=~"DCGM_.*"}')
            writer_series = query(url, 'pycudawatch_ticks_stored_total{job="gpu-hosts"}')

    # Each host's GPU series carry instance=<host>, so NVIDIA's dashboard tells them apart.
    instances = [entry["metric"]["instance"] for entry in series]
    assert sorted(instances) == sorted(HUB_HOSTS * HUB_GPUS_PER_HOST)
    assert all(entry["metric"]["Hostname"] == entry["metric"]["instance"] for entry in series)
    assert {e["metric"]["instance"]: e["metric"]["host"] for e in published} == {
        host: host for host in HUB_HOSTS
    }
    # A host the hub does not know answers 404: Prometheus marks that target down.
    assert up == {"gpu-node-1": "1", "gpu-node-2": "1", "gpu-node-gone": "0"}
    # The hub's own series come once, from the hub's all-hosts answer, whose GPU series the
    # job in docs/prometheus.md drops (test_prometheus_scrapes_one_series_per_simulated_gpu
    # scrapes them).
    assert writer_series == []
    assert hub_stored["metric"]["instance"] == hub_address
    assert hub_gpu_series == []


# NVIDIA's "NVIDIA DCGM Exporter Dashboard" (dcgm-exporter's grafana/dcgm-exporter-dashboard.json,
# Grafana 12239): its variables and every panel's query, as written there, with "All" chosen
# for both variables (Grafana then puts `.*` in a regex matcher).
DASHBOARD_VARIABLES = {"instance": "DCGM_FI_DEV_GPU_TEMP", "gpu": "DCGM_FI_DEV_GPU_TEMP"}
DASHBOARD_PANELS = {
    "GPU Temperature": 'DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"}',
    "GPU Avg. Temp": 'avg(DCGM_FI_DEV_GPU_TEMP{instance=~"$instance", gpu=~"$gpu"})',
    "GPU Power Usage": 'DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~"$gpu"}',
    "GPU Power Total": 'sum(DCGM_FI_DEV_POWER_USAGE{instance=~"$instance", gpu=~"$gpu"})',
    "GPU SM Clocks": 'DCGM_FI_DEV_SM_CLOCK{instance=~"$instance", gpu=~"$gpu"} * 1000000',
    "GPU Utilization": 'DCGM_FI_DEV_GPU_UTIL{instance=~"$instance", gpu=~"$gpu"}',
    "GPU Framebuffer Mem Used": 'DCGM_FI_DEV_FB_USED{instance=~"$instance", gpu=~"$gpu"}',
    "Tensor Core Utilization": (
        'DCGM_FI_PROF_PIPE_TENSOR_ACTIVE{instance=~"$instance", gpu=~"$gpu"}'
    ),
}
DASHBOARD_GPUS = 4  # 0 GeForce RTX 4090, 1 H100 (GPM), 2 A100, 3 L40S


def test_nvidias_dcgm_dashboard_finds_every_panels_data(tmp_path):
    with Stack(tmp_path, {"PCW_SIM_GPUS": str(DASHBOARD_GPUS), "PCW_INTERVAL_S": "1"}) as stack:
        stack.wait_web()
        with prometheus(tmp_path, [scrape_job("dcgm", stack)], stack) as url:
            tensor = DASHBOARD_PANELS["Tensor Core Utilization"].replace("$instance", ".*")
            wait_until(
                lambda: query(url, tensor.replace("$gpu", ".*")), 60.0, "tensor activity", stack
            )
            variables = {
                name: api(url, f"/api/v1/label/{name}/values", **{"match[]": metric})
                for name, metric in DASHBOARD_VARIABLES.items()
            }
            answers = {
                title: query(url, promql.replace("$instance", ".*").replace("$gpu", ".*"))
                for title, promql in DASHBOARD_PANELS.items()
            }
        gpus = gpus_of(stack)

    assert variables["instance"] == [stack.web_url.removeprefix("http://")]
    assert variables["gpu"] == [str(index) for index in range(DASHBOARD_GPUS)]
    for title in ("GPU Temperature", "GPU Power Usage", "GPU SM Clocks", "GPU Utilization"):
        assert {a["metric"]["gpu"] for a in answers[title]} == set(variables["gpu"]), title
    assert len(answers["GPU Framebuffer Mem Used"]) == DASHBOARD_GPUS
    [average] = answers["GPU Avg. Temp"]
    temps = [float(a["value"][1]) for a in answers["GPU Temperature"]]
    assert min(temps) <= float(average["value"][1]) <= max(temps)
    [total] = answers["GPU Power Total"]
    assert float(total["value"][1]) > 0
    clocks = {a["metric"]["gpu"]: float(a["value"][1]) for a in answers["GPU SM Clocks"]}
    assert all(hz >= 100e6 for hz in clocks.values())  # MHz * 1e6: hertz, as the panel shows it
    # the tensor cores: only the H100 has GPM; a ratio from 0 to 1, as the panel's axis says
    [tensor_answer] = answers["Tensor Core Utilization"]
    h100 = next(gpu for gpu in gpus if gpu["gpu_index"] == 1)
    assert tensor_answer["metric"]["UUID"] == h100["gpu_uuid"]
    assert 0 <= float(tensor_answer["value"][1]) <= 1
