"""A notification in words: its title and body, the same in every target (pure)."""

from __future__ import annotations

import time

from services.alerts.engine import Notification

KIND_WORDS = {"firing": "FIRING", "resolved": "RESOLVED", "repeat": "STILL FIRING"}


def utc_text(ts: float) -> str:
    """Return "2026-12-07 14:05:00 UTC"."""
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def title(notification: Notification) -> str:
    """Return "[FIRING critical] xid: GPU 3 of gpu-node-2 reported XID 79 (...)"."""
    alert = notification.alert
    word = KIND_WORDS[notification.kind]
    return f"[{word} {alert.severity}] {alert.rule}: {alert.message}"


def body(notification: Notification) -> str:
    """Return the message's lines: what, where, since when, and its idempotency key."""
    alert = notification.alert
    subject = alert.subject
    lines = [alert.message]
    if subject.gpu_uuid is not None:
        lines.append(
            f"GPU {subject.gpu_index} of {subject.host}: {subject.gpu_name} ({subject.gpu_uuid})"
        )
    elif subject.host is not None:
        lines.append(f"host: {subject.host}")
    started_ts = alert.fired_ts if alert.fired_ts is not None else alert.since_ts
    lines.append(f"rule: {alert.rule} · severity: {alert.severity} · since {utc_text(started_ts)}")
    if notification.kind == "resolved":
        lines.append(f"resolved at {utc_text(notification.ts)}")
    lines.append(f"notification key: {notification.key}")
    return "\n".join(lines)
