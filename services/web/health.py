"""Judge the health of the whole pipeline from what the web process can see; no I/O here."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from common.status import WriterStatus

TICK_GRACE_S = 10.0
MIN_WRITER_STATUS_AGE_S = 30.0


@dataclass(frozen=True)
class HealthInputs:
    """What /healthz looks at; times are UTC epoch seconds."""

    now_s: float
    interval_s: float
    last_tick_ts: float | None
    last_tick_source: str | None  # "live" (the feed), "db" (gpus.last_ts) or None
    writer: WriterStatus | None
    db_bytes: int | None
    db_problem: str | None
    malformed_messages: int
    websocket_clients: int
    internal_errors: int


def max_tick_age_s(interval_s: float) -> float:
    """Return the age in seconds beyond which the last tick means readings have stopped."""
    return 3 * interval_s + TICK_GRACE_S


def max_writer_status_age_s(interval_s: float) -> float:
    """Return the age in seconds beyond which the writer's status file is stale."""
    return max(MIN_WRITER_STATUS_AGE_S, 3 * interval_s)


def assess(inputs: HealthInputs) -> dict[str, Any]:
    """Return the /healthz body; its status is "ok" only when `problems` is empty.

    "down": no reading arrives (none yet, or the last is too old); "degraded": readings arrive
    but something else is wrong (the writer, the database).
    """
    problems: list[str] = []
    tick_age_s = None if inputs.last_tick_ts is None else inputs.now_s - inputs.last_tick_ts
    readings_stopped = tick_age_s is None or tick_age_s > max_tick_age_s(inputs.interval_s)
    if tick_age_s is None:
        problems.append("no reading has arrived yet, on the live feed or in the database")
    elif readings_stopped:
        problems.append(
            f"the last reading is {tick_age_s:.0f} s old "
            f"(more than {max_tick_age_s(inputs.interval_s):g} s)"
        )
    writer = inputs.writer
    writer_age_s = None if writer is None else inputs.now_s - writer.updated_ts
    if writer is None:
        problems.append("the writer has not reported its status")
    else:
        if writer.state != "ok":
            reason = f": {writer.last_error}" if writer.last_error else ""
            problems.append(f"the writer is {writer.state}{reason}")
        if writer_age_s is not None and writer_age_s > max_writer_status_age_s(inputs.interval_s):
            problems.append(f"the writer's status is {writer_age_s:.0f} s old")
    if inputs.db_problem is not None:
        problems.append(inputs.db_problem)
    status = "down" if readings_stopped else "degraded" if problems else "ok"
    return {
        "status": status,
        "last_tick_age_s": None if tick_age_s is None else round(tick_age_s, 3),
        "last_tick_source": inputs.last_tick_source,
        "writer": {
            "state": None if writer is None else writer.state,
            "updated_age_s": None if writer_age_s is None else round(writer_age_s, 3),
            "last_error": None if writer is None else writer.last_error,
            "stored_readings": None if writer is None else writer.stored_readings,
        },
        "db_bytes": inputs.db_bytes,
        "malformed_messages": inputs.malformed_messages,
        "websocket_clients": inputs.websocket_clients,
        "internal_errors": inputs.internal_errors,
        "problems": problems,
    }
