"""Notification targets: Apprise URLs hold secrets that no log line, stored row or answer shows."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path

import pytest

from common.config import NotifyTarget, load_config
from services.alerts.targets import TargetError, load_targets
from services.writer.sender import Sender
from services.writer.store import connect
from tests.stack import free_port, run_service, stack_env

SECRET = "s3cr3t-T0ken"


def step_once(db_path: Path, give_up_s: float, url: str | None = None) -> Sender:
    """Run one step of a sender with one critical target (by default a port nobody serves)."""
    url = url or f"json://127.0.0.1:{free_port()}/x"
    sender = Sender(db_path, load_targets((NotifyTarget(("critical",), url),), None), 1, give_up_s)
    sender.step()
    sender.stop()
    return sender


def test_a_target_is_shown_by_its_service_and_number_never_its_url():
    targets = load_targets(
        (
            NotifyTarget(("critical",), f"json://hook:{SECRET}@127.0.0.1:9/x"),
            NotifyTarget(
                ("critical", "info"),
                f"mailtos://alerts:{SECRET}@mail.example.com?to=lab@example.com",
            ),
        ),
        None,
    )

    shown = [target.shown for target in targets.by_id.values()]
    assert shown == ["JSON target 1", "E-Mail target 2"]
    assert [t.target_id for t in targets.taking("info")] == [list(targets.by_id)[1]]


def test_a_url_apprise_cannot_use_is_named_by_its_entry_not_its_secret():
    config = load_config({"PCW_NOTIFY_URLS": f"json://ok/x nosuchservice://{SECRET}@host/x"})

    with pytest.raises(TargetError) as caught:
        load_targets(config.notify_urls, None)

    assert "PCW_NOTIFY_URLS entry 2" in str(caught.value)
    assert SECRET not in str(caught.value)


def test_a_notification_stored_before_any_target_was_set_is_not_sent_late(tmp_path: Path):
    db_path = tmp_path / "gpu_stats.db"
    conn = connect(db_path)
    conn.execute(
        "INSERT INTO notifications (idempotency_key, kind, severity, title, body, created_ts)"
        " VALUES ('pcw-old', 'firing', 'critical', 't', 'b', strftime('%s', 'now') - 7200)"
    )
    step_once(db_path, 3600)

    assert conn.execute("SELECT count(*) FROM deliveries").fetchone() == (0,)
    assert conn.execute("SELECT fanned_out FROM notifications").fetchall() == [(1,)]


def test_an_apprise_config_file_tags_targets_by_severity(tmp_path):
    path = tmp_path / "apprise.txt"
    path.write_text(f"critical=json://127.0.0.1:9/a\ninfo,warning=json://u:{SECRET}@h/b\n")

    targets = load_targets((), path)

    assert [len(targets.taking(s)) for s in ("critical", "warning", "info")] == [1, 1, 1]
    assert all(SECRET not in t.shown for t in targets.by_id.values())


def test_a_failing_target_logs_and_stores_no_secret(tmp_path: Path, caplog):
    db_path = tmp_path / "gpu_stats.db"
    conn = connect(db_path)
    conn.execute(
        "INSERT INTO notifications (idempotency_key, kind, severity, title, body, created_ts)"
        " VALUES ('pcw-1', 'firing', 'critical', 't', 'b', strftime('%s', 'now'))"
    )
    url = f"json://hook:{SECRET}@127.0.0.1:{free_port()}/x"  # nothing listens there
    sender = Sender(db_path, load_targets((NotifyTarget(("critical",), url),), None), 1, 3600)

    with caplog.at_level(logging.DEBUG):
        sender.step()
    sender.stop()

    rows = (
        sqlite3.connect(db_path)
        .execute(
            "SELECT state, attempts, target, target_shown, coalesce(last_error, '') FROM deliveries"
        )
        .fetchall()
    )
    assert [(state, attempts) for state, attempts, *_ in rows] == [("queued", 1)]
    assert SECRET not in " ".join(map(str, rows[0]))
    assert "failed (try 1)" in caplog.text
    assert SECRET not in caplog.text


def test_a_target_down_past_the_give_up_time_is_given_up_and_counted(tmp_path: Path):
    db_path = tmp_path / "gpu_stats.db"
    conn = connect(db_path)
    url = f"json://127.0.0.1:{free_port()}/x"  # nothing listens there
    targets = load_targets((NotifyTarget(("critical",), url),), None)
    conn.execute(
        "INSERT INTO notifications (idempotency_key, kind, severity, title, body, created_ts,"
        " fanned_out) VALUES ('pcw-2', 'firing', 'critical', 't', 'b',"
        " strftime('%s', 'now') - 120, 1)"
    )
    conn.execute(  # tried since it was stored, 2 minutes ago
        "INSERT INTO deliveries (notification_id, target, target_shown, state, next_try_ts)"
        " VALUES (1, ?, 'JSON target 1', 'queued', 0)",
        (next(iter(targets.by_id)),),
    )
    sender = Sender(db_path, targets, 1, 60)

    sender.step()
    sender.stop()

    rows = conn.execute("SELECT state, attempts, last_error FROM deliveries").fetchall()
    assert rows == [("given_up", 1, "the target did not take it")]
    assert (sender.given_up, sender.sent) == (1, 0)


def test_a_silenced_alert_is_not_sent(tmp_path: Path):
    db_path = tmp_path / "gpu_stats.db"
    conn = connect(db_path)
    conn.execute(
        "INSERT INTO notifications (idempotency_key, kind, alert_key, rule, severity, host,"
        " title, body, created_ts) VALUES ('pcw-3', 'firing', 'ecc|h/GPU-1', 'ecc', 'critical',"
        " 'h', 't', 'b', strftime('%s', 'now'))"
    )
    conn.execute(
        "INSERT INTO alert_silences (host, until_ts, created_ts)"
        " VALUES ('h', strftime('%s', 'now') + 600, strftime('%s', 'now'))"
    )
    step_once(db_path, 60)

    assert conn.execute("SELECT state, attempts FROM deliveries").fetchall() == [("silenced", 0)]


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"PCW_NOTIFY_URLS": f"nosuchservice://{SECRET}@host/x"}, "PCW_NOTIFY_URLS entry 1"),
        ({"PCW_ALERT_RULES_FILE": "RULES"}, "PCW_ALERT_RULES_FILE: "),
    ],
)
def test_the_writer_refuses_to_start_on_a_bad_target_or_rule_file(tmp_path, env, named):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "hot"\nmetric = "tmp_c"\nop = ">"\nthreshold = 85\n')
    environ = stack_env(tmp_path, {k: str(rules) if v == "RULES" else v for k, v in env.items()})

    result = run_service("writer", environ, 60)

    lines = [line for line in result.stderr.splitlines() if "cannot start" in line]
    assert result.returncode == 2
    assert len(lines) == 1 and named in lines[0], result.stderr
    assert SECRET not in result.stderr
    if "RULES" in env.values():
        assert "line 3" in lines[0] and "temp_c" in lines[0]
