"""The web process as users run it: `python -m services.web`, its exit status, and any query."""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.web.conftest import T0, UUID_A, create_db, fill_fixture

REPO_ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 15.0


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_web(db_path: Path, log_path: Path, **env: str) -> tuple[subprocess.Popen, int]:
    """Start `python -m services.web` on a free port; return it once /healthz answers."""
    port = free_port()
    environ = {
        **os.environ,
        "PCW_DB_PATH": str(db_path),
        "PCW_WEB_HOST": "127.0.0.1",
        "PCW_WEB_PORT": str(port),
        "PCW_SUBSCRIBE": f"tcp://127.0.0.1:{free_port()}",
        "PCW_INTERVAL_S": "10",
        **env,
    }
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.web"],
            cwd=REPO_ROOT,
            env=environ,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"web exited with {process.returncode}: {log_path.read_text()}")
        try:
            get(port, "/healthz")
            return process, port
        except OSError:
            time.sleep(0.05)
    stop(process)
    raise AssertionError(f"web did not answer in {START_TIMEOUT_S} s: {log_path.read_text()}")


def stop(process: subprocess.Popen) -> int:
    """Terminate, wait, and kill only if it will not go; return the exit status."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


def get(port: int, target: str) -> tuple[int, bytes, str]:
    """Send one raw GET; return status, body and content type."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target)
        response = conn.getresponse()
        return response.status, response.read(), response.getheader("Content-Type", "")
    finally:
        conn.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[tuple[int, Path]]:
    folder = tmp_path_factory.mktemp("web-process")
    db_path = folder / "gpu_stats.db"
    conn = create_db(db_path)
    fill_fixture(conn)
    conn.close()
    log_path = folder / "web.log"
    process, port = start_web(db_path, log_path)
    yield port, log_path
    assert stop(process) == 0
    assert "Traceback" not in log_path.read_text()


# Raw query strings: any printable ASCII http.client will put on the request line, with the
# parameter names and values the API knows mixed in so that many reach the deeper checks.
known_pairs = st.tuples(
    st.sampled_from(["gpu", "from", "to", "points", "metric", "form", ""]),
    st.one_of(
        st.sampled_from(["", "0", "-1", "nan", "inf", "1e308", "2000", "2001", UUID_A]),
        st.sampled_from([str(T0), str(T0 + 300), "util_gpu_pct", "temp_c", "GPU-nope"]),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers().map(str),
        st.text(max_size=30),
    ),
)
encoded_queries = st.lists(known_pairs, max_size=6).map(urllib.parse.urlencode)
raw_queries = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters="#"),
    max_size=80,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.one_of(encoded_queries, raw_queries))
def test_no_query_string_makes_history_fail(server, query):
    port, _log = server
    status, body, content_type = get(port, "/api/v1/history?" + query)
    assert status in (200, 400, 404), (query, status, body[:300])
    assert content_type.startswith("application/json")
    decoded = json.loads(body)
    assert isinstance(decoded, dict)
    assert ("error" in decoded) == (status != 200)


def test_the_process_reported_no_internal_error(server):
    port, log_path = server
    _status, body, _type = get(port, "/healthz")
    assert json.loads(body)["internal_errors"] == 0
    assert "unexpected error" not in log_path.read_text()


def test_a_bad_setting_stops_the_process_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "services.web"],
        cwd=REPO_ROOT,
        env={**os.environ, "PCW_WEB_PORT": "http"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "PCW_WEB_PORT" in result.stderr and "'http'" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


async def test_sigterm_closes_websockets_going_away_and_exits_0(tmp_path, db_path):
    log_path = tmp_path / "web.log"
    process, port = start_web(db_path, log_path)
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(f"http://127.0.0.1:{port}/ws") as ws,
        ):
            assert json.loads((await ws.receive(timeout=5)).data)["type"] == "snapshot"
            process.send_signal(signal.SIGTERM)
            message = await ws.receive(timeout=10)
            assert message.type == aiohttp.WSMsgType.CLOSE
            assert message.data == aiohttp.WSCloseCode.GOING_AWAY
        assert process.wait(timeout=10) == 0
    finally:
        stop(process)
    assert "Traceback" not in log_path.read_text()
