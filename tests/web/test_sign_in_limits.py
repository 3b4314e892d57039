"""Wrong passwords cannot hold up a real sign-in: checks are bounded per address and in all."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest

from services.web.app import create_app
from services.web.auth import BasicAuth, SignInLimits, SignInRefusedError, load_users
from tests.web.conftest import make_config, wait_until
from tests.web.test_auth import (  # noqa: F401  (fixtures)
    GOOD,
    USER,
    auth_file,
    basic,
    user_line,
)
from tests.web.test_error_flood import metric_value

WRONG_ATTEMPTS = 200
FAILURES = 10
# Linux routes all of 127/8 to loopback: the legitimate user comes from another address.
OTHER_ADDRESS = "127.0.0.2"


@pytest.fixture
async def client(aiohttp_client, config, auth_file):  # noqa: F811
    app = create_app(
        make_config(
            config.db_path, PCW_AUTH_FILE=str(auth_file), PCW_SIGN_IN_FAILURES=str(FAILURES)
        )
    )
    return await aiohttp_client(app)


async def test_200_wrong_passwords_get_429_and_a_sign_in_from_elsewhere_is_answered(client):
    url = f"http://127.0.0.1:{client.server.port}/api/v1/gpus"
    server = client.server.runner.server
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    user = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=(OTHER_ADDRESS, 0)))
    async with attacker, user:

        async def wrong(number: int) -> tuple[int, str | None, dict]:
            async with attacker.get(url, headers=basic(USER, f"guess {number}")) as response:
                return response.status, response.headers.get("Retry-After"), await response.json()

        attempts = [asyncio.create_task(wrong(number)) for number in range(WRONG_ATTEMPTS)]
        # every wrong attempt has reached the server (waiting for a check, or answered)
        await wait_until(
            lambda: server.requests_count >= WRONG_ATTEMPTS, timeout_s=60, what="the flood"
        )
        async with user.get(url, headers=GOOD) as signed_in:
            assert signed_in.status == 200
        answers = await asyncio.gather(*attempts)
        metrics_url = url.replace("/api/v1/gpus", "/metrics")
        metrics = await (await user.get(metrics_url, headers=GOOD)).text()

    statuses = [status for status, _retry, _body in answers]
    assert set(statuses) <= {401, 429}
    assert statuses.count(429) >= WRONG_ATTEMPTS - FAILURES
    for status, retry_after, body in answers:
        if status == 429:
            assert retry_after is not None and int(retry_after) >= 1
            assert "error" in body
    # no more than FAILURES passwords of the flood were ever checked: the sign-in had at most
    # that many checks ahead of it, not 200
    checked = metric_value(metrics, 'pycudawatch_http_errors_total{kind="sign_in_failed"}')
    assert checked is not None and checked <= FAILURES


async def test_a_page_loading_with_new_credentials_in_parallel_is_one_check(client):
    responses = await asyncio.gather(
        *(client.get(path, headers=GOOD) for path in ("/", "/api/v1/gpus", "/static/app.js") * 4)
    )
    assert [response.status for response in responses] == [200] * 12


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


async def test_an_address_is_locked_out_after_its_failures_until_the_lockout_ends(auth_file):  # noqa: F811
    clock = FakeClock()
    limits = SignInLimits(failures=3, lockout_s=300.0)
    checker = BasicAuth(load_users(auth_file), limits, clock=clock)
    for number in range(3):
        assert await checker.user(basic(USER, f"guess {number}")["Authorization"], "a") is None
        clock.now_s += 10
    with pytest.raises(SignInRefusedError) as refused:
        await checker.user(GOOD["Authorization"], "a")  # even the right password
    assert refused.value.status == 429
    assert refused.value.retry_after_s == 300 - 30
    assert await checker.user(GOOD["Authorization"], "b") == USER  # another address
    clock.now_s += 270  # the lockout is over: "a" is checked again
    assert await checker.user(basic(USER, "guess 9")["Authorization"], "a") is None
    assert checker.checks == 5


async def test_a_full_check_queue_is_503_and_the_table_of_addresses_is_bounded(auth_file):  # noqa: F811
    limits = SignInLimits(at_once=1, queue=0, clients=2)
    checker = BasicAuth(load_users(auth_file), limits)
    first = asyncio.create_task(checker.user(basic(USER, "guess a")["Authorization"], "a"))
    await wait_until(lambda: checker.under_way == 1, what="the first check")
    with pytest.raises(SignInRefusedError) as refused:
        await checker.user(basic(USER, "guess b")["Authorization"], "b")
    assert refused.value.status == 503 and refused.value.retry_after_s == 1
    assert await first is None
    for address in ("c", "d", "e"):
        assert await checker.user(basic(USER, "guess")["Authorization"], address) is None
    assert checker.clients_remembered == 2
