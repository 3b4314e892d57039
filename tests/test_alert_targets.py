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
from tests.stack import free_port

SECRET = "s3cr3t-T0ken"


def test_a_target_is_shown_with_its_secrets_starred():
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
    assert len(shown) == 2
    assert all(SECRET not in text and "****" in text for text in shown), shown
    assert [t.target_id for t in targets.taking("info")] == [list(targets.by_id)[1]]


def test_a_url_apprise_cannot_use_is_named_by_its_entry_not_its_secret():
    config = load_config({"PCW_NOTIFY_URLS": f"json://ok/x nosuchservice://{SECRET}@host/x"})

    with pytest.raises(TargetError) as caught:
        load_targets(config.notify_urls, None)

    assert "PCW_NOTIFY_URLS entry 2" in str(caught.value)
    assert SECRET not in str(caught.value)


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
