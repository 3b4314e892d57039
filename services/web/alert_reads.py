"""Read the alerts: those pending or firing now, their transitions over a range, the silences in
force and the notifications' delivery counts (jobs for Store.call; small, indexed tables)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from services.web.shapes import Alert, AlertEvent, Deliveries, Silence

MAX_EVENTS = 1000

_ACTIVE = (
    "SELECT alert_key, rule, severity, state, host, gpu_uuid, gpu_index, gpu_name, since_ts,"
    " fired_ts, last_ts, value, message FROM alert_states ORDER BY"
    " CASE severity WHEN 'critical' THEN 0 WHEN 'warning' THEN 1 ELSE 2 END, since_ts"
)
_SILENCES = (
    "SELECT silence_id, alert_key, rule, host, gpu_uuid, until_ts, created_ts, created_by,"
    " comment FROM alert_silences WHERE until_ts > ? ORDER BY until_ts"
)
_EVENTS = (
    "SELECT event_id, ts, state, alert_key, rule, severity, host, gpu_uuid, gpu_index, gpu_name,"
    " fired_ts, value, message FROM alert_events WHERE ts >= ? AND ts <= ?{where}"
    " ORDER BY ts DESC, event_id DESC LIMIT ?"
)
_DELIVERIES = (
    "SELECT coalesce(sum(state = 'queued'), 0), coalesce(sum(state = 'sent'), 0),"
    " coalesce(sum(state = 'sent' AND attempts > 1), 0), coalesce(sum(state = 'given_up'), 0),"
    " coalesce(sum(state = 'silenced'), 0) FROM deliveries"
)
# What changes when any of the above does, a firing alert's newest reading (its value and text)
# included: compared each second to tell the websockets.
_VERSION = (
    "SELECT (SELECT coalesce(max(event_id), 0) FROM alert_events),"
    " (SELECT count(*) FROM alert_states), (SELECT coalesce(sum(last_ts), 0) FROM alert_states),"
    " (SELECT count(*) FROM alert_silences WHERE until_ts > ?),"
    " (SELECT coalesce(max(silence_id), 0) FROM alert_silences),"
    " (SELECT count(*) FROM deliveries), (SELECT count(*) FROM deliveries WHERE state = 'queued')"
)


@dataclass(frozen=True)
class AlertsNow:
    """The alerts pending or firing, the silences in force, the delivery counts."""

    active: list[Alert]
    silences: list[Silence]
    deliveries: Deliveries
    version: tuple[float, ...]


def covers(silence: Silence, alert: Alert) -> bool:
    """Return whether a silence covers an alert (each field it sets must match)."""
    pairs = (
        (silence.key, alert.key),
        (silence.rule, alert.rule),
        (silence.host, alert.host),
        (silence.gpu_uuid, alert.gpu_uuid),
    )
    return all(want is None or want == have for want, have in pairs)


def now_job(now_s: float, targets: int) -> Callable[[sqlite3.Connection], AlertsNow | None]:
    """Return a job reading the alerts now (None before the file has its alert tables)."""

    def job(conn: sqlite3.Connection) -> AlertsNow | None:
        if not _has_tables(conn):
            return None
        silences = [Silence(*row) for row in conn.execute(_SILENCES, (now_s,))]
        active = []
        for key, *rest in conn.execute(_ACTIVE):
            alert = Alert(key, *rest, silenced_until_ts=None)
            until = [s.until_ts for s in silences if covers(s, alert)]
            alert.silenced_until_ts = max(until) if until else None
            active.append(alert)
        queued, sent, retried, given_up, silenced = conn.execute(_DELIVERIES).fetchone()
        deliveries = Deliveries(targets, queued, sent, retried, given_up, silenced)
        version = tuple(conn.execute(_VERSION, (now_s,)).fetchone())
        return AlertsNow(active, silences, deliveries, version)

    return job


def version_job(now_s: float) -> Callable[[sqlite3.Connection], tuple[float, ...] | None]:
    """Return a job reading what changes when the alerts, silences or deliveries do."""

    def job(conn: sqlite3.Connection) -> tuple[float, ...] | None:
        if not _has_tables(conn):
            return None
        return tuple(conn.execute(_VERSION, (now_s,)).fetchone())

    return job


def events_job(
    from_s: float, to_s: float, state: str | None, rule: str | None, host: str | None
) -> Callable[[sqlite3.Connection], tuple[list[AlertEvent], bool]]:
    """Return a job reading the transitions in [from_s, to_s], newest first."""
    where, args = "", [from_s, to_s]
    for column, value in (("state", state), ("rule", rule), ("host", host)):
        if value is not None:
            where += f" AND {column} = ?"
            args.append(value)

    def job(conn: sqlite3.Connection) -> tuple[list[AlertEvent], bool]:
        if not _has_tables(conn):
            return [], False
        rows = conn.execute(_EVENTS.format(where=where), (*args, MAX_EVENTS + 1)).fetchall()
        return [AlertEvent(*row) for row in rows[:MAX_EVENTS]], len(rows) > MAX_EVENTS

    return job


def _has_tables(conn: sqlite3.Connection) -> bool:
    found = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'alert_states'"
    ).fetchone()
    return found is not None
