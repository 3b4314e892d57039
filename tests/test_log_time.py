"""Log lines carry UTC timestamps unless TZ is set, whatever the machine's own zone."""

from __future__ import annotations

import logging
import time

import pytest

from common.config import log_formatter

AT_S = 1_700_000_000.5  # 2023-11-14 22:13:20 UTC


@pytest.fixture
def machine_in_tokyo(monkeypatch):
    """Put this process in a non-UTC local zone, as a host's /etc/localtime would."""
    monkeypatch.setenv("TZ", "JST-9")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def _line_at(formatter: logging.Formatter, at_s: float) -> str:
    record = logging.LogRecord("writer", logging.INFO, __file__, 1, "stored", None, None)
    record.created = at_s
    record.msecs = 500.0
    return formatter.format(record)


def test_log_time_is_utc_when_tz_is_not_set(machine_in_tokyo):
    line = _line_at(log_formatter({}), AT_S)

    assert line == "2023-11-14 22:13:20,500 INFO writer: stored"


def test_log_time_follows_tz_when_it_is_set(machine_in_tokyo):
    line = _line_at(log_formatter({"TZ": "JST-9"}), AT_S)

    assert line.startswith("2023-11-15 07:13:20,500 ")
