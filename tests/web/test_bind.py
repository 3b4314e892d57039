"""The web process on an address it cannot listen on: it says so, naming the settings, exit 2."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_a_port_already_taken_is_one_line_naming_the_settings_and_exit_2(tmp_path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with socket.socket() as spare:
            spare.bind(("127.0.0.1", 0))
            subscribe = f"tcp://127.0.0.1:{spare.getsockname()[1]}"
        result = subprocess.run(
            [sys.executable, "-m", "services.web"],
            cwd=REPO_ROOT,
            env={
                **os.environ,
                "PCW_DB_PATH": str(tmp_path / "gpu_stats.db"),
                "PCW_WEB_HOST": "127.0.0.1",
                "PCW_WEB_PORT": str(port),
                "PCW_SUBSCRIBE": subscribe,
            },
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2, result.stderr
    assert "serving on" not in result.stderr  # it never served
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if "cannot listen" in line]
    assert len(lines) == 1, result.stderr
    assert "PCW_WEB_HOST" in lines[0] and "PCW_WEB_PORT" in lines[0]
    assert f"127.0.0.1:{port}" in lines[0]
