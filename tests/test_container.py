"""The container as users run it: build the image, bring up the `demo` service with compose.

Checks what a user notices: the container turns healthy, the API lists the simulated GPUs and
the processes on them (read from the simulated source's own /proc tree by the unprivileged user),
/metrics answers in dcgm-exporter's names, all three processes log to `docker logs`, `down`
leaves the last tick in the database file on the host, and a second `up` keeps the history and
goes on with it. With the same image, the `agent` service's settings refuse to publish in plain
text on 0.0.0.0 without keys.

Needs a Docker engine and compose (`docker compose` or `docker-compose`); skipped, with the reason,
only where no engine answers, and failed instead where CI is set (CI=true). PCW_TEST_BASE_IMAGE
names the image to build on (default: the Dockerfile's own); PCW_TEST_COMPOSE the compose command
(default: `docker compose` where it works, else `docker-compose`). Everything it makes has a
unique name and is removed at the end: the compose project (containers, network), the image tag
and the temporary database folder.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ci import unavailable
from tests.stack import REPO, free_port

pytestmark = pytest.mark.docker

SIM_GPUS = 2
IDLE_GPU = 1  # held all the time by a simulated notebook process, so it always lists one
DEMO_HOST_NAME = "pycudawatch-demo"  # the demo service's `hostname:`
PROGRAMS = ("writer", "sampler", "web")
BUILD_TIMEOUT_S = 900.0
COMMAND_TIMEOUT_S = 120.0
HEALTHY_TIMEOUT_S = 90.0


def run(command: list[str], timeout_s: float = COMMAND_TIMEOUT_S, **kwargs) -> str:
    """Run a command; return its output, or fail the test with the end of it."""
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout_s, check=False, **kwargs
        )
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"`{shlex.join(command)}` took more than {timeout_s:g} s: {error.output}")
    if done.returncode != 0:
        pytest.fail(
            f"`{shlex.join(command)}` exited {done.returncode}\n"
            f"{(done.stdout + done.stderr)[-4000:]}"
        )
    return done.stdout + done.stderr


def docker_engine_problem() -> str | None:
    """Return why no Docker engine can be used here, or None when one answers."""
    try:
        done = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=60, check=False
        )
    except FileNotFoundError:
        return "the docker command is not installed"
    except subprocess.TimeoutExpired:
        return "`docker info` did not answer within 60 s"
    if done.returncode != 0:
        return f"`docker info` failed: {(done.stderr or done.stdout).strip()[-500:]}"
    return None


def compose_command() -> list[str]:
    """Return the compose command to use: PCW_TEST_COMPOSE, `docker compose`, `docker-compose`."""
    if os.environ.get("PCW_TEST_COMPOSE"):
        return shlex.split(os.environ["PCW_TEST_COMPOSE"])
    probe = subprocess.run(
        ["docker", "compose", "version"], capture_output=True, timeout=60, check=False
    )
    if probe.returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    pytest.fail("a Docker engine answers, but neither `docker compose` nor `docker-compose` exists")


def get_json(url: str) -> dict:
    """GET url and return its JSON body."""
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


class DemoProject:
    """One compose project running the demo service on a free port and a temporary db folder."""

    def __init__(self, workdir: Path) -> None:
        token = uuid.uuid4().hex[:10]
        self.name = f"pcwtest{token}"
        self.image = f"pycudawatch-test:{token}"
        self.container = f"{self.name}-demo"
        self.agent_container = f"{self.name}-agent"
        (workdir / "keys").mkdir()
        self.port = free_port()
        # Not created here: like ./db on a fresh clone, Docker creates it, owned by root.
        self.db_dir = workdir / "db"
        self.db_path = self.db_dir / "demo.db"
        self.url = f"http://127.0.0.1:{self.port}"
        # Files in the folder belong to PUID; a test run by a user other than root keeps its own.
        self.uid = os.getuid() or 1000
        override = workdir / "compose.test.yml"
        override.write_text(  # JSON is YAML
            json.dumps(
                {
                    "services": {
                        "demo": {
                            "image": self.image,
                            "container_name": self.container,
                            "volumes": [f"{self.db_dir}:/app/db"],
                            "environment": {
                                "PCW_INTERVAL_S": "1",
                                "PCW_SIM_GPUS": str(SIM_GPUS),
                                "PCW_SIM_IDLE_GPUS": str(IDLE_GPU),
                                "PUID": str(self.uid),
                                "PGID": str(self.uid),
                            },
                            "healthcheck": {"interval": "1s"},
                        },
                        # Only created (its GPU reservation cannot start here), to read its
                        # settings; the keys folder is an empty one of the test's own.
                        "agent": {
                            "image": self.image,
                            "container_name": self.agent_container,
                            "volumes": [f"{workdir / 'keys'}:/app/keys:ro"],
                        },
                    }
                },
                indent=2,
            )
        )
        self.compose = [
            *compose_command(),
            "-p", self.name,
            "-f", str(REPO / "docker-compose.yml"),
            "-f", str(override),
            "--profile", "demo",
            "--profile", "agent",
        ]  # fmt: skip
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("PCW_", "COMPOSE_"))
            and key not in ("BASE_IMAGE", "TZ", "PUID", "PGID", "DOCKER_DEFAULT_PLATFORM")
        }
        if os.environ.get("PCW_TEST_BASE_IMAGE"):
            env["BASE_IMAGE"] = os.environ["PCW_TEST_BASE_IMAGE"]
        env["PCW_DEMO_PORT"] = str(self.port)
        self.env = env

    def __call__(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S) -> str:
        """Run one compose command on this project."""
        return run([*self.compose, *args], timeout_s, env=self.env, cwd=REPO)

    def logs(self) -> str:
        """Return the container's log (docker logs; its error text when it cannot be read)."""
        done = subprocess.run(
            ["docker", "logs", self.container], capture_output=True, text=True, timeout=60,
            check=False,
        )  # fmt: skip
        return done.stdout + done.stderr

    def wait_logs(self, needles: list[str], timeout_s: float = 30.0) -> str:
        """Wait until the container's log holds every needle; return the log."""
        deadline = time.monotonic() + timeout_s
        logs = self.logs()
        while not all(needle in logs for needle in needles):
            if time.monotonic() > deadline:
                missing = [needle for needle in needles if needle not in logs]
                pytest.fail(f"the log lacks {missing} after {timeout_s:g} s\n{logs[-4000:]}")
            time.sleep(0.5)
            logs = self.logs()
        return logs

    def wait_healthy(self, timeout_s: float = HEALTHY_TIMEOUT_S) -> None:
        """Wait until Docker reports the container healthy (the image's own HEALTHCHECK)."""
        deadline = time.monotonic() + timeout_s
        state: dict = {}
        while time.monotonic() < deadline:
            state = json.loads(
                run(["docker", "inspect", "--format", "{{json .State}}", self.container])
            )
            if (state.get("Health") or {}).get("Status") == "healthy":
                return
            if state.get("Status") in ("exited", "dead"):
                break
            time.sleep(0.5)
        health = json.dumps(state.get("Health"), indent=1)[-2000:]
        pytest.fail(f"the container did not turn healthy: {health}\n{self.logs()[-4000:]}")

    def gpus(self) -> dict:
        """Return /api/v1/gpus."""
        return get_json(self.url + "/api/v1/gpus")

    def wait_gpus(self, condition: object, what: str, timeout_s: float = 30.0) -> dict:
        """Poll /api/v1/gpus until condition(body) holds; return that body."""
        deadline = time.monotonic() + timeout_s
        body: dict = {}
        while time.monotonic() < deadline:
            body = self.gpus()
            if condition(body):  # type: ignore[operator]
                return body
            time.sleep(0.2)
        pytest.fail(f"timed out waiting for {what}: {json.dumps(body)[-2000:]}")

    def processes(self, gpu_uuid: str) -> list[dict]:
        """Return /api/v1/processes of one GPU."""
        return get_json(f"{self.url}/api/v1/processes?gpu={gpu_uuid}")["processes"]

    def metrics(self) -> str:
        """Return the /metrics text."""
        with urllib.request.urlopen(self.url + "/metrics", timeout=5) as response:
            return response.read().decode()

    def util_lines(self) -> list[str]:
        """Return the DCGM_FI_DEV_GPU_UTIL lines of /metrics."""
        return [
            line for line in self.metrics().splitlines() if line.startswith("DCGM_FI_DEV_GPU_UTIL{")
        ]

    def agent_refusal(self) -> tuple[int, str]:
        """Run the sampler with the `agent` service's settings; return (exit status, output).

        The agent reserves the host's GPUs, which a machine without the NVIDIA runtime cannot
        start, so compose only creates it; its command and environment, as compose resolved
        them, then run in a plain container of the same image.
        """
        self("up", "--no-start", "--no-build", "agent")
        created = json.loads(
            run(["docker", "inspect", "--format", "{{json .Config}}", self.agent_container])
        )
        env_args = [arg for pair in created["Env"] for arg in ("-e", pair)]
        done = subprocess.run(
            ["docker", "run", "--rm", *env_args, self.image, *created["Cmd"]],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    def run_image(self, *env_pairs: str) -> tuple[int, str]:
        """Run the image's own command with some settings to its end; return (status, output)."""
        env_args = [arg for pair in env_pairs for arg in ("-e", pair)]
        done = subprocess.run(
            ["docker", "run", "--rm", *env_args, self.image],
            capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S, check=False,
        )  # fmt: skip
        return done.returncode, done.stdout + done.stderr

    def stored(self, workdir: Path) -> tuple[int, float, float]:
        """Return (ticks, first ts, last ts) stored in the file, read from a copy on the host."""
        copy_dir = workdir / f"copy-{uuid.uuid4().hex[:6]}"
        copy_dir.mkdir()
        for path in self.db_dir.glob("demo.db*"):
            shutil.copy2(path, copy_dir / path.name)
        conn = sqlite3.connect(copy_dir / "demo.db")
        try:
            count, first, last = conn.execute(
                "SELECT count(DISTINCT ts), min(ts), max(ts) FROM readings"
            ).fetchone()
        finally:
            conn.close()
        return int(count), float(first), float(last)


@pytest.fixture
def workdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="pcw-container-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def demo(workdir: Path) -> Iterator[DemoProject]:
    problem = docker_engine_problem()
    if problem is not None:
        unavailable(f"no Docker engine can be used here: {problem}")
    project = DemoProject(workdir)
    try:
        yield project
    finally:
        subprocess.run(
            [*project.compose, "down", "--remove-orphans", "--timeout", "30"],
            env=project.env, cwd=REPO, capture_output=True, timeout=120, check=False,
        )  # fmt: skip
        # --no-prune keeps the parent layers: the legacy builder's cache for the next run.
        subprocess.run(
            ["docker", "image", "rm", "--no-prune", project.image],
            capture_output=True, timeout=120, check=False,
        )  # fmt: skip


def last_ts(body: dict) -> float:
    """Return the newest reading time over all GPUs of a /api/v1/gpus body."""
    return max(gpu["latest"]["ts"] for gpu in body["gpus"] if gpu["latest"])


@pytest.mark.timeout(BUILD_TIMEOUT_S + 300)
def test_demo_container_keeps_its_history_across_down_and_up(
    demo: DemoProject, workdir: Path
) -> None:
    demo("build", "demo", timeout_s=BUILD_TIMEOUT_S)

    demo("up", "-d", "demo")
    demo.wait_healthy()
    body = demo.wait_gpus(
        lambda b: len(b["gpus"]) == SIM_GPUS and all(g["latest"] for g in b["gpus"]),
        f"{SIM_GPUS} GPUs with readings",
    )
    assert body["simulated"] is True
    assert {gpu["host"] for gpu in body["gpus"]} == {DEMO_HOST_NAME}
    uuids = [gpu["gpu_uuid"] for gpu in body["gpus"]]

    # Prometheus can scrape it: one utilization series per GPU, under dcgm-exporter's name. The
    # metrics come from the web's live feed, which may not have its first tick yet (the API and
    # /healthz above can answer from the file).
    deadline = time.monotonic() + 30
    while not (util_lines := demo.util_lines()):
        if time.monotonic() > deadline:
            pytest.fail(f"no DCGM_FI_DEV_GPU_UTIL line in /metrics\n{demo.logs()[-4000:]}")
        time.sleep(0.5)
    assert sorted(uuid for uuid in uuids if any(f'UUID="{uuid}"' in x for x in util_lines)) == (
        sorted(uuids)
    ), util_lines
    assert len(util_lines) == SIM_GPUS, util_lines

    # Who holds the idle GPU: its process, named and owned, resolved as the container's
    # unprivileged user from the simulated source's /proc tree.
    deadline = time.monotonic() + 30
    listed: list[dict] = []
    while not any(p["visible"] and p["name"] and p["user"] for p in listed):
        if time.monotonic() > deadline:
            pytest.fail(f"no named process on GPU {IDLE_GPU}: {listed}\n{demo.logs()[-4000:]}")
        time.sleep(0.5)
        listed = demo.processes(uuids[IDLE_GPU])

    # supervisord calls a program running once it has stayed up for its startsecs (2 s).
    logs = demo.wait_logs([f"success: {name} entered RUNNING state" for name in PROGRAMS])
    for name in PROGRAMS:
        assert f"services.{name}" in logs, f"no log line of the {name}\n{logs[-4000:]}"
    assert "Permission denied" not in logs, logs[-4000:]
    # The entrypoint handed the folder Docker created (as root) to PUID, and dropped to it.
    assert demo.db_path.stat().st_uid == demo.uid
    assert "Supervisor is running as root" not in logs, logs[-4000:]

    # `down` stops the container with SIGTERM: every process exits cleanly, the writer last,
    # and what the API showed last is in the file on the host.
    seen_ts = last_ts(demo.gpus())
    demo("stop", "demo")
    demo.wait_logs([f"stopped: {name} (exit status 0)" for name in PROGRAMS], timeout_s=0)
    demo("down")
    ticks_before, first_before, last_before = demo.stored(workdir)
    assert last_before >= seen_ts
    assert ticks_before >= 2

    # A second `up` finds the history and goes on with it.
    demo("up", "-d", "demo")
    demo.wait_healthy()
    body = demo.wait_gpus(
        lambda b: len(b["gpus"]) == SIM_GPUS and last_ts(b) > last_before,
        "a tick newer than those before the restart",
    )
    assert [gpu["first_ts"] for gpu in body["gpus"]] == [first_before] * SIM_GPUS
    demo("down")
    ticks_after, first_after, last_after = demo.stored(workdir)
    assert first_after == first_before
    assert last_after > last_before
    assert ticks_after > ticks_before

    # The agent profile, as shipped (no keys, no PCW_ALLOW_PLAINTEXT), will not publish in
    # plain text on 0.0.0.0, and says why.
    status, output = demo.agent_refusal()
    assert status == 2, output[-4000:]
    assert "refusing to publish unencrypted on tcp://0.0.0.0:5556" in output, output[-4000:]
    assert "PCW_ALLOW_PLAINTEXT=1" in output, output[-4000:]

    # A bad setting stops the container at once, with status 2 and the line naming it; its
    # programs are not restarted while the container stays up doing nothing.
    status, output = demo.run_image("PCW_SOURCE=simulated", "PCW_INTERVAL_S=banana")
    assert status == 2, output[-4000:]
    assert "PCW_INTERVAL_S='banana' is not allowed" in output, output[-4000:]
    assert all(output.count(f"spawned: '{name}'") == 1 for name in PROGRAMS), output[-4000:]


def _without_docker(ci: str | None) -> subprocess.CompletedProcess[str]:
    """Run this file's container tests where no docker command exists, CI set or not."""
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "PCW_TEST_COMPOSE")}
    env["PATH"] = str(Path(sys.executable).parent)  # python, pytest; no docker
    if ci is not None:
        env["CI"] = ci
    return subprocess.run(
        [sys.executable, "-m", "pytest", __file__, "-q", "-p", "no:cacheprovider", "-rs",
         "-k", "not no_docker_engine"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def test_no_docker_engine_fails_in_ci() -> None:
    result = _without_docker("true")
    assert result.returncode == 1, result.stdout
    assert "CI is set, and no Docker engine can be used here" in result.stdout
    assert "skipped" not in result.stdout.splitlines()[-1]


def test_no_docker_engine_skips_with_the_reason_outside_ci() -> None:
    result = _without_docker(None)
    assert result.returncode == 0, result.stdout
    assert "the docker command is not installed" in result.stdout
