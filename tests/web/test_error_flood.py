"""A flood of bad requests before any sign-in: one log line per kind of error, every one counted."""

from __future__ import annotations

import asyncio
import logging

import pytest

from common.throttle import ThrottledLog
from services.web.app import create_app
from tests.web.test_edges import LONG_URL, MANY_HEADERS, raw_exchange

FLOOD = 40


@pytest.fixture
async def client(aiohttp_client, config):
    return await aiohttp_client(create_app(config))


def metric_value(exposition: str, sample: str) -> float | None:
    for line in exposition.splitlines():
        if line.startswith(sample + " "):
            return float(line.split()[-1])
    return None


async def test_a_flood_of_unreadable_requests_logs_one_line_per_kind_and_counts_each(
    client, caplog
):
    caplog.set_level(logging.DEBUG)
    for _ in range(FLOOD):
        await asyncio.gather(
            raw_exchange(client.server.port, LONG_URL),
            raw_exchange(client.server.port, MANY_HEADERS),
        )
    logged = [record for record in caplog.records if record.levelno >= logging.WARNING]
    assert all(record.exc_info is None for record in logged), "a traceback was logged"
    assert len(logged) == 2, [record.getMessage() for record in logged]  # one per kind
    assert all("\n" not in record.getMessage() for record in logged)
    metrics = await (await client.get("/metrics")).text()
    assert metric_value(metrics, 'pycudawatch_http_errors_total{kind="line_too_long"}') == FLOOD
    assert metric_value(metrics, 'pycudawatch_http_errors_total{kind="bad_http_message"}') == FLOOD


def test_a_kind_is_logged_again_after_its_interval_with_the_count_held_back(caplog):
    now = [0.0]
    log = ThrottledLog(logging.getLogger("test.throttle"), 60.0, clock=lambda: now[0])
    with caplog.at_level(logging.INFO, logger="test.throttle"):
        assert log.log("a", logging.WARNING, "bad %s", "one")
        assert not log.log("a", logging.WARNING, "bad %s", "two")
        assert not log.log("a", logging.WARNING, "bad %s", "three")
        assert log.log("b", logging.WARNING, "other")  # another kind is not held back
        now[0] = 60.0
        assert log.log("a", logging.WARNING, "bad %s", "four")
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "bad one",
        "other",
        "bad four (2 more of this kind not logged since the last line)",
    ]


def test_the_table_of_kinds_is_bounded():
    log = ThrottledLog(logging.getLogger("test.throttle"), 60.0, max_kinds=3, clock=lambda: 0.0)
    for number in range(100):
        log.log(f"kind {number}", logging.DEBUG, "x")
    assert len(log._kinds) == 3
