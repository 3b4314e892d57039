"""Process start: the real `python -m services.<name>` refuses bad settings and a missing NVML."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.stack import REPO, free_port, nvml_library_loads, run_service

START_TIMEOUT_S = 30.0


def _env(tmp_path: Path, **settings: str) -> dict[str, str]:
    """Return a clean environment: no PCW_* from outside, the repo importable, then settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PCW_")}
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        PCW_DB_PATH=str(tmp_path / "db" / "gpu_stats.db"),
        PCW_PUB_ENDPOINT=f"tcp://127.0.0.1:{free_port()}",
        PCW_HOST_NAME="testhost",
    )
    env.update(settings)
    return env


def _lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]


@pytest.mark.parametrize("name", ["sampler", "writer"])
@pytest.mark.parametrize(
    ("variable", "value"),
    [("PCW_INTERVAL_S", "fast"), ("PCW_SUBSCRIBE", "udp://x:1"), ("PCW_LOG_LEVEL", "loud")],
)
def test_a_bad_setting_stops_the_process_with_one_line(tmp_path, name, variable, value):
    env = _env(tmp_path, PCW_SOURCE="simulated", **{variable: value})
    result = run_service(name, env, START_TIMEOUT_S, cwd=tmp_path)

    lines = _lines(result)
    assert result.returncode == 2, lines
    assert len(lines) == 1, lines
    assert f"{variable}={value!r}" in lines[0]
    assert "not allowed" in lines[0]
    assert not (tmp_path / "db").exists()  # it stopped before touching anything


@pytest.mark.parametrize("source", [{"PCW_SOURCE": "nvml"}, {}], ids=["nvml", "default"])
def test_nvml_source_without_a_driver_says_so_and_names_the_simulated_source(tmp_path, source):
    if nvml_library_loads():
        # a GPU host: the same command must start and keep publishing until it is stopped
        with subprocess.Popen(
            [sys.executable, "-m", "services.sampler"],
            env=_env(tmp_path, PCW_INTERVAL_S="0.5", **source),
            cwd=tmp_path,
            stderr=subprocess.PIPE,
            text=True,
        ) as process:
            with pytest.raises(subprocess.TimeoutExpired):
                process.wait(3)
            process.terminate()
            assert process.wait(START_TIMEOUT_S) == 0, process.stderr.read()
        return

    result = run_service("sampler", _env(tmp_path, **source), START_TIMEOUT_S, cwd=tmp_path)

    lines = _lines(result)
    assert result.returncode != 0, lines
    assert any("NVML was not found" in line and "PCW_SOURCE=simulated" in line for line in lines)
    assert not any("Traceback" in line for line in lines), lines
