"""The writer's SQL of alerts: their states, transitions and the outbox of notifications.

store_outcome() runs inside the transaction of the readings that an evaluation judged, so that
a tick and what it changed in the alerts are stored together or not at all.
"""

from __future__ import annotations

import sqlite3
import time

from services.alerts.engine import AlertState, Outcome, Subject
from services.alerts.text import body, title

_STATE_COLUMNS = (
    "alert_key, rule, severity, subject, host, gpu_uuid, gpu_index, gpu_name, state, since_ts,"
    " last_ts, fired_ts, notified_ts, cleared_since_ts, value, message"
)
_UPSERT_STATE = (
    f"INSERT OR REPLACE INTO alert_states ({_STATE_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_EVENT = (
    "INSERT OR IGNORE INTO alert_events (alert_key, rule, severity, host, gpu_uuid, gpu_index,"
    " gpu_name, state, ts, fired_ts, value, message) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_INSERT_NOTIFICATION = (
    "INSERT OR IGNORE INTO notifications (idempotency_key, kind, alert_key, rule, severity, host,"
    " gpu_uuid, title, body, reading_ts, created_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def load_states(conn: sqlite3.Connection) -> list[AlertState]:
    """Return every stored pending or firing alert."""
    rows = conn.execute(f"SELECT {_STATE_COLUMNS} FROM alert_states").fetchall()
    return [
        AlertState(
            rule,
            severity,
            Subject(subject, host, gpu_uuid, gpu_index, gpu_name),
            state,
            since_ts,
            last_ts,
            value,
            message,
            fired_ts,
            notified_ts,
            cleared_since_ts,
        )
        for (
            _key,
            rule,
            severity,
            subject,
            host,
            gpu_uuid,
            gpu_index,
            gpu_name,
            state,
            since_ts,
            last_ts,
            fired_ts,
            notified_ts,
            cleared_since_ts,
            value,
            message,
        ) in rows
    ]


def load_hosts(conn: sqlite3.Connection) -> dict[str, float]:
    """Return {host: its sampling interval (s)} of every host the file holds."""
    rows = conn.execute(
        "SELECT host, max(coalesce(interval_s, 60)) FROM gpus GROUP BY host"
    ).fetchall()
    return {host: float(interval_s) for host, interval_s in rows}


def store_outcome(conn: sqlite3.Connection, outcome: Outcome, notify: bool = True) -> None:
    """Write an evaluation's states, transitions and (notify: there are targets) notifications,
    inside a transaction."""
    gone = [(key,) for key, state in outcome.states.items() if state is None]
    conn.executemany("DELETE FROM alert_states WHERE alert_key = ?", gone)
    conn.executemany(
        _UPSERT_STATE,
        [_state_row(state) for state in outcome.states.values() if state is not None],
    )
    conn.executemany(
        _INSERT_EVENT,
        [
            (
                t.alert.key,
                t.alert.rule,
                t.alert.severity,
                t.alert.subject.host,
                t.alert.subject.gpu_uuid,
                t.alert.subject.gpu_index,
                t.alert.subject.gpu_name,
                t.state,
                t.ts,
                t.alert.fired_ts if t.alert.fired_ts is not None else t.ts,
                t.alert.value,
                t.alert.message,
            )
            for t in outcome.transitions
        ],
    )
    if not notify:
        return
    created_ts = time.time()
    conn.executemany(
        _INSERT_NOTIFICATION,
        [
            (
                n.key,
                n.kind,
                n.alert.key,
                n.alert.rule,
                n.alert.severity,
                n.alert.subject.host,
                n.alert.subject.gpu_uuid,
                title(n),
                body(n),
                n.ts,
                created_ts,
            )
            for n in outcome.notifications
        ],
    )


def purge_alerts(conn: sqlite3.Connection, before_ts: float) -> None:
    """Delete the transitions, sent or given-up messages and silences older than before_ts."""
    conn.execute("DELETE FROM alert_events WHERE ts < ?", (before_ts,))
    # the alerts of a host purged with its readings (silent past the retention) go with it
    conn.execute(
        "DELETE FROM alert_states WHERE host IS NOT NULL AND host NOT IN (SELECT host FROM gpus)"
    )
    conn.execute("DELETE FROM alert_silences WHERE until_ts < ?", (before_ts,))
    conn.execute("DELETE FROM deliveries WHERE done_ts < ? AND state != 'queued'", (before_ts,))
    conn.execute(
        "DELETE FROM notifications WHERE created_ts < ? AND fanned_out = 1 AND notification_id"
        " NOT IN (SELECT notification_id FROM deliveries)",
        (before_ts,),
    )


def _state_row(state: AlertState) -> tuple:
    subject = state.subject
    return (
        state.key,
        state.rule,
        state.severity,
        subject.key,
        subject.host,
        subject.gpu_uuid,
        subject.gpu_index,
        subject.gpu_name,
        state.state,
        state.since_ts,
        state.last_ts,
        state.fired_ts,
        state.notified_ts,
        state.cleared_since_ts,
        state.value,
        state.message,
    )
