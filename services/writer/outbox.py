"""The SQL of the outbox: notifications fanned out to their targets, and each delivery's tries.

A notification row is written with the transition that caused it (services/writer/alert_store)
or by the web process (a test). fan_out() gives it one delivery row per target that takes its
severity, in one transaction; each delivery is then tried until sent, silenced or given up.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # apprise loads only where targets are set
    from services.alerts.targets import Targets


@dataclass(frozen=True)
class Due:
    """A delivery whose next try is due, with its message."""

    notification_id: int
    target: str
    attempts: int
    kind: str
    alert_key: str | None
    rule: str | None
    severity: str
    host: str | None
    gpu_uuid: str | None
    title: str
    body: str
    created_ts: float


_DUE = (
    "SELECT d.notification_id, d.target, d.attempts, n.kind, n.alert_key, n.rule, n.severity,"
    " n.host, n.gpu_uuid, n.title, n.body, n.created_ts FROM deliveries AS d"
    " JOIN notifications AS n USING (notification_id)"
    " WHERE d.state = 'queued' AND d.next_try_ts <= ? ORDER BY d.notification_id LIMIT ?"
)
_SILENCED = (
    "SELECT 1 FROM alert_silences WHERE until_ts > ?1"
    " AND (alert_key IS NULL OR alert_key = ?2) AND (rule IS NULL OR rule = ?3)"
    " AND (host IS NULL OR host = ?4) AND (gpu_uuid IS NULL OR gpu_uuid = ?5)"
    " AND coalesce(alert_key, rule, host, gpu_uuid) IS NOT NULL LIMIT 1"
)
_NEXT_DUE = "SELECT min(next_try_ts) FROM deliveries WHERE state = 'queued'"


def fan_out(conn: sqlite3.Connection, targets: Targets, now_ts: float, give_up_s: float) -> int:
    """Give each new notification a delivery per target that takes it; return how many.

    One stored longer ago than give_up_s (before a target was set) goes to none.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        rows = conn.execute(
            "SELECT notification_id, severity, created_ts FROM notifications WHERE fanned_out = 0"
        ).fetchall()
        deliveries = [
            (notification_id, target.target_id, target.shown, now_ts)
            for notification_id, severity, created_ts in rows
            if now_ts - created_ts < give_up_s
            for target in targets.taking(severity)
        ]
        conn.executemany(
            "INSERT OR IGNORE INTO deliveries (notification_id, target, target_shown, state,"
            " next_try_ts) VALUES (?, ?, ?, 'queued', ?)",
            deliveries,
        )
        conn.executemany(
            "UPDATE notifications SET fanned_out = 1 WHERE notification_id = ?",
            [(notification_id,) for notification_id, _, _ in rows],
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return len(deliveries)


def due(conn: sqlite3.Connection, now_ts: float, limit: int) -> list[Due]:
    """Return the deliveries whose try is due, oldest message first."""
    return [Due(*row) for row in conn.execute(_DUE, (now_ts, limit)).fetchall()]


def next_due_ts(conn: sqlite3.Connection) -> float | None:
    """Return when the next queued delivery is due, None when none is queued."""
    value = conn.execute(_NEXT_DUE).fetchone()[0]
    return None if value is None else float(value)


def silenced(conn: sqlite3.Connection, item: Due, now_ts: float) -> bool:
    """Return whether a silence in force covers the delivery's alert."""
    if item.alert_key is None:
        return False
    found = conn.execute(
        _SILENCED, (now_ts, item.alert_key, item.rule, item.host, item.gpu_uuid)
    ).fetchone()
    return found is not None


def begin_try(conn: sqlite3.Connection, item: Due, retry_ts: float) -> None:
    """Count a try before it is made, due again at retry_ts should it never be settled."""
    conn.execute(
        "UPDATE deliveries SET attempts = attempts + 1, next_try_ts = ?"
        " WHERE notification_id = ? AND target = ?",
        (retry_ts, item.notification_id, item.target),
    )


def settle(
    conn: sqlite3.Connection,
    item: Due,
    state: str,
    now_ts: float,
    next_try_ts: float | None = None,
    error: str | None = None,
) -> None:
    """Record a delivery's outcome: sent, silenced, given_up, or queued again for next_try_ts."""
    conn.execute(
        "UPDATE deliveries SET state = ?, next_try_ts = ?, done_ts = ?, last_error = ?"
        " WHERE notification_id = ? AND target = ?",
        (
            state,
            next_try_ts if next_try_ts is not None else now_ts,
            None if state == "queued" else now_ts,
            error,
            item.notification_id,
            item.target,
        ),
    )
