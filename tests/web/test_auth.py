"""Basic auth over every route: 401 without or with wrong credentials, the page with them."""

from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from services.web.app import create_app
from services.web.auth import (
    CHALLENGE,
    AuthFileError,
    PasswordHash,
    hash_password,
    load_users,
    parse_basic,
)
from tests.stack import REPO
from tests.web.conftest import make_config

USER = "alice"
PASSWORD = "correct horse: battery staple"  # a ':' in a password is allowed


def basic(user: str, password: str) -> dict[str, str]:
    """Return the Authorization header of a Basic sign-in."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


GOOD = basic(USER, PASSWORD)
WRONG = basic(USER, "correct horse")


def passwd(user: str, password: str) -> subprocess.CompletedProcess[str]:
    """Run the passwd command with the password on standard input."""
    return subprocess.run(
        [sys.executable, "-m", "services.web.passwd", user],
        cwd=REPO,
        input=password + "\n",
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.fixture(scope="module")
def user_line() -> str:
    """Return the line the passwd command prints for USER (run once: scrypt is slow)."""
    result = passwd(USER, PASSWORD)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
def auth_file(tmp_path: Path, user_line: str) -> Path:
    """Return a users file with a comment, a blank line and USER's line."""
    path = tmp_path / "users.txt"
    path.write_text(f"# who may see the dashboard\n\n{user_line}")
    return path


@pytest.fixture
async def app(config, auth_file: Path) -> web.Application:
    return create_app(make_config(config.db_path, PCW_AUTH_FILE=str(auth_file)))


@pytest.fixture
async def client(aiohttp_client, app):
    return await aiohttp_client(app)


def every_route(app: web.Application) -> list[str]:
    """Return a concrete URL for every GET route the app has, and one static file."""
    urls = []
    for resource in app.router.resources():
        info = resource.get_info()
        if "directory" in info:
            urls.append(f"{info['prefix']}/app.js")
        elif "path" in info:
            urls.append(info["path"])
    assert {"/", "/api/v1/gpus", "/api/v1/history", "/ws", "/healthz", "/static/app.js"} <= set(
        urls
    )
    return urls


async def test_without_credentials_every_route_is_401_with_a_challenge(client, app):
    checked = []
    for url in every_route(app):
        if url == "/healthz":
            continue
        response = await client.get(url)
        assert response.status == 401, url
        assert response.headers["WWW-Authenticate"] == CHALLENGE
        assert "Unauthorized" in (await response.json())["error"]
        checked.append(url)
    assert "/metrics" in checked or not Path(REPO / "services/web/metrics.py").exists()


async def test_websocket_without_credentials_is_refused(client):
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/ws")
    assert refused.value.status == 401


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic " + base64.b64encode(f"{USER}:correct horse".encode()).decode(),  # wrong password
        "Basic " + base64.b64encode(f"bob:{PASSWORD}".encode()).decode(),  # unknown user
        "Basic " + base64.b64encode(USER.encode()).decode(),  # no ':'
        "Basic !!!not-base64!!!",
        "Basic dXNlcjpwYXNz\u00e9",  # not ASCII: the token is not base64, never a 500
        "Bearer " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode(),
        "",
    ],
)
async def test_wrong_credentials_are_401(client, authorization):
    for url in ("/", "/api/v1/gpus", "/static/app.js"):
        response = await client.get(url, headers={"Authorization": authorization})
        assert response.status == 401, url
        assert response.headers["WWW-Authenticate"] == CHALLENGE


async def test_with_credentials_the_page_api_assets_websocket_and_health_answer(client):
    for url in ("/", "/api/v1/gpus", "/static/app.js", "/api/v1/history"):
        response = await client.get(url, headers=GOOD)
        assert response.status == 200, url
    page = await client.get("/", headers=GOOD)
    assert "pyCudaWatch" in await page.text()
    # the fixture file's readings are old, so the health is "down": its details are shown
    health = await client.get("/healthz", headers=GOOD)
    assert health.status == 503
    assert (await health.json())["problems"]
    async with client.ws_connect("/ws", headers=GOOD) as ws:
        assert (await ws.receive_json(timeout=5))["type"] == "snapshot"


async def test_metrics_need_credentials_as_prometheus_sends_them(client, app):
    if "/metrics" not in every_route(app):
        pytest.fail("/metrics is not served")
    assert (await client.get("/metrics")).status == 401
    assert (await client.get("/metrics", headers=WRONG)).status == 401
    response = await client.get("/metrics", headers=GOOD)
    assert response.status == 200
    assert "text/plain" in response.headers["Content-Type"]


async def test_health_without_credentials_tells_only_the_status(client):
    response = await client.get("/healthz")
    assert response.status == 503  # as with credentials: Docker's healthcheck still works
    assert await response.json() == {"status": "unhealthy"}


async def test_a_repeated_sign_in_is_remembered_and_a_wrong_one_never_is(client):
    for _ in range(3):
        assert (await client.get("/api/v1/gpus", headers=GOOD)).status == 200
        assert (await client.get("/api/v1/gpus", headers=WRONG)).status == 401


def test_passwd_prints_a_line_that_verifies_and_salts_each_time(user_line):
    user, _, encoded = user_line.strip().partition(":")
    assert user == USER
    parsed = PasswordHash.parse(encoded)
    assert parsed.matches(PASSWORD)
    assert not parsed.matches(PASSWORD + " ")
    assert encoded.startswith("scrypt$16384$8$1$")
    assert hash_password(PASSWORD) != hash_password(PASSWORD)  # a fresh salt each time


@pytest.mark.parametrize(
    ("user", "password", "why"),
    [
        ("bob:x", "long enough pw", "not a user name"),
        ("#bob", "long enough pw", "not a user name"),  # its line would be a comment
        ("bob", "short", "at least 8"),
    ],
)
def test_passwd_refuses_bad_input(user, password, why):
    result = passwd(user, password)
    assert result.returncode == 1
    assert why in result.stderr
    assert result.stdout == ""


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("", "holds no user"),
        ("# only a comment\n", "holds no user"),
        ("alice\n", "line 1: not a user:hash line"),
        ("alice:plaintext-password\n", "line 1: not a scrypt"),
        ("alice:scrypt$3$8$1$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAA==\n", "power of 2"),
        # within each bound, but a check would need 2.2 GB, which hashlib refuses at sign-in
        ("alice:scrypt$1048576$16$1$c2FsdA==$AAAAAAAAAAAAAAAAAAAAAA==\n", "over 2 GiB"),
    ],
)
def test_bad_auth_files_are_refused_naming_the_line(tmp_path, text, why):
    path = tmp_path / "users.txt"
    path.write_text(text)
    with pytest.raises(AuthFileError, match=why):
        load_users(path)


def test_an_auth_file_saved_with_a_byte_order_mark_signs_its_first_user_in(tmp_path, user_line):
    path = tmp_path / "users.txt"
    path.write_text(user_line, encoding="utf-8-sig")  # as Windows Notepad saves it
    users = load_users(path)
    assert list(users) == [USER]
    assert users[USER].matches(PASSWORD)


def test_web_process_with_a_bad_auth_file_exits_2_in_one_line(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text("alice:nope\n")
    env = {"PATH": "/usr/bin:/bin", "PCW_AUTH_FILE": str(path), "PCW_DB_PATH": str(tmp_path / "d")}
    result = subprocess.run(
        [sys.executable, "-m", "services.web"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert len(lines) == 1 and "PCW_AUTH_FILE" in lines[0] and "line 1" in lines[0]


def test_basic_header_parsing():
    token = base64.b64encode("é:pa:ss".encode()).decode()
    assert parse_basic(f"Basic {token}") == ("é", "pa:ss")
    assert parse_basic(f"basic {token}") == ("é", "pa:ss")
    assert parse_basic("Basic") is None
