"""The web process's only writes: a user's own actions on alerts (silences, a test message).

Everything else in the file is the writer's. These are rare and small: each opens a connection,
writes in one short transaction and closes it, in a worker thread, never on the event loop.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from services.web.shapes import Silence

BUSY_TIMEOUT_MS = 5000
TEST_TITLE = "[TEST] pyCudaWatch test notification"


class AlertWriteError(RuntimeError):
    """The file cannot take the write now (the text says why)."""


def _connect(db_path: Path) -> sqlite3.Connection:
    if not db_path.is_file():
        raise AlertWriteError("the database does not exist yet: the writer has not started")
    conn = sqlite3.connect(db_path, isolation_level=None, timeout=BUSY_TIMEOUT_MS / 1000)
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alert_silences'"
    ).fetchone()
    if found is None:
        conn.close()
        raise AlertWriteError("the database has no alert tables yet: the writer has not started")
    return conn


def add_silence(
    db_path: Path,
    key: str | None,
    rule: str | None,
    host: str | None,
    gpu_uuid: str | None,
    duration_s: float,
    created_by: str | None,
    comment: str | None,
) -> Silence:
    """Store a silence from now for duration_s; return it."""
    now_s = time.time()
    try:
        conn = _connect(db_path)
        try:
            (silence_id,) = conn.execute(
                "INSERT INTO alert_silences (alert_key, rule, host, gpu_uuid, until_ts,"
                " created_ts, created_by, comment) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
                " RETURNING silence_id",
                (key, rule, host, gpu_uuid, now_s + duration_s, now_s, created_by, comment),
            ).fetchone()
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise AlertWriteError(f"cannot store the silence: {error}") from None
    return Silence(
        silence_id, key, rule, host, gpu_uuid, now_s + duration_s, now_s, created_by, comment
    )


def end_silence(db_path: Path, silence_id: int) -> bool:
    """End a silence now; return whether it was in force."""
    now_s = time.time()
    try:
        conn = _connect(db_path)
        try:
            ended = conn.execute(
                "UPDATE alert_silences SET until_ts = ? WHERE silence_id = ? AND until_ts > ?",
                (now_s, silence_id, now_s),
            ).rowcount
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise AlertWriteError(f"cannot end the silence: {error}") from None
    return ended > 0


def add_test_notification(db_path: Path, asked_by: str | None) -> int:
    """Store a test message for every target; the writer's sender sends it. Return its id."""
    now_s = time.time()
    who = f" by {asked_by}" if asked_by else ""
    body = (
        f"A test notification, asked for{who} at"
        f" {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(now_s))}: this target works."
    )
    try:
        conn = _connect(db_path)
        try:
            conn.execute("BEGIN IMMEDIATE")
            (notification_id,) = conn.execute(
                "INSERT INTO notifications (idempotency_key, kind, severity, title, body,"
                " created_ts) VALUES (?, 'test', 'test', ?, ?, ?) RETURNING notification_id",
                (f"pcw-test-{now_s!r}", TEST_TITLE, body, now_s),
            ).fetchone()
            key = f"pcw-test-{notification_id}"
            conn.execute(
                "UPDATE notifications SET idempotency_key = ?, body = body || ? WHERE"
                " notification_id = ?",
                (key, f"\nnotification key: {key}", notification_id),
            )
            conn.execute("COMMIT")
        finally:
            conn.close()
    except sqlite3.Error as error:
        raise AlertWriteError(f"cannot store the test notification: {error}") from None
    return int(notification_id)
