"""Judge the health of the whole pipeline from what the web process can see; no I/O here."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from common.staleness import STALE_AFTER_INTERVALS, STALE_GRACE_S
from common.status import WriterStatus
from services.web.hosts import HostState
from services.web.shapes import Gpu, GpuError

MIN_WRITER_STATUS_AGE_S = 30.0
# How long a database file found deleted or replaced under the writer stays among the problems.
DB_REOPENED_PROBLEM_S = 600.0
# The writer's counters that /healthz passes on as they are (common.status.WriterStatus).
WRITER_COUNTERS = (
    "buffered_ticks",
    "stored_ticks",
    "stored_readings",
    "malformed_messages",
    "dropped_ticks",
    "replay_gaps",
    "lost_ticks",
    "buffered_bytes",
    "buffer_limit_bytes",
    "db_reopened_ts",
)


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
    gpu_errors: tuple[GpuError, ...] = ()
    hosts: tuple[HostState, ...] = ()  # every host, judged stale or not (fleet.host_states)


def gpu_error_problem(gpu_error: GpuError) -> str:
    """Return the line /healthz lists among its problems for a GPU in error."""
    since = "" if gpu_error.since_ts is None else f" since {utc_text(gpu_error.since_ts)}"
    return (
        f"GPU {gpu_error.gpu_index} ({gpu_error.gpu_name}) on host {gpu_error.host}:"
        f" {gpu_error.error}{since}"
    )


def max_writer_status_age_s(interval_s: float) -> float:
    """Return the age in seconds beyond which the writer's status file is stale."""
    return max(MIN_WRITER_STATUS_AGE_S, 3 * interval_s)


def utc_text(ts: float) -> str:
    """Return UTC epoch seconds as ISO 8601 text to the second, e.g. 2026-01-31T23:59:00Z."""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def current_gpu_errors(gpus: Iterable[Gpu]) -> tuple[GpuError, ...]:
    """Return the GPUs whose error is current, sorted by host and index.

    Current: the GPU's newest reading is in error, belongs to its host's newest tick (a GPU the
    sampler no longer lists, such as one taken out, is not judged on its last word) and is not
    stale (a host that stopped reporting is not either).
    """
    read = [(gpu, gpu.latest) for gpu in gpus if gpu.latest is not None]
    host_newest_ts: dict[str, float] = {}
    for gpu, latest in read:
        host_newest_ts[gpu.host] = max(latest.ts, host_newest_ts.get(gpu.host, latest.ts))
    errors = [
        GpuError(
            host=gpu.host,
            gpu_index=gpu.gpu_index,
            gpu_uuid=gpu.gpu_uuid,
            gpu_name=gpu.gpu_name,
            error=latest.error,
            since_ts=gpu.error_since_ts,
        )
        for gpu, latest in read
        if latest.error is not None and latest.ts >= host_newest_ts[gpu.host] and not gpu.stale
    ]
    return tuple(sorted(errors, key=lambda e: (e.host, e.gpu_index, e.gpu_uuid)))


def assess(inputs: HealthInputs) -> dict[str, Any]:
    """Return the /healthz body; its status is "ok" only when `problems` is empty.

    "down": no reading arrives (none yet, or every host is stale); "degraded": readings arrive
    but something else is wrong (a GPU in error, the writer, the database). Readings arrive
    while any host is not stale (services/web/hosts.py's rule, the API's): a hub whose other
    hosts went quiet stays "ok" and lists them in "stale_hosts", which is not a problem.
    """
    problems: list[str] = []
    tick_age_s = None if inputs.last_tick_ts is None else inputs.now_s - inputs.last_tick_ts
    stale_hosts = [host for host in inputs.hosts if host.stale]
    readings_stopped = tick_age_s is None or len(stale_hosts) == len(inputs.hosts)
    if tick_age_s is None:
        problems.append("no reading has arrived yet, on the live feed or in the database")
    elif readings_stopped:
        problems.append(
            f"every host is stale (no tick for {STALE_AFTER_INTERVALS} of its intervals"
            f" + {STALE_GRACE_S:g} s): the last reading is {tick_age_s:.0f} s old"
        )
    writer = inputs.writer
    writer_age_s = None if writer is None else inputs.now_s - writer.updated_ts
    if writer is None:
        problems.append("the writer has not reported its status")
    else:
        if writer.state != "ok":
            reason = f": {writer.last_error}" if writer.last_error else ""
            problems.append(f"the writer is {writer.state}{reason}")
            if writer.dropped_ticks:
                problems.append(
                    f"the writer has dropped the {writer.dropped_ticks} oldest tick(s) it could"
                    f" not store: its buffer holds {writer.buffered_bytes} of"
                    f" {writer.buffer_limit_bytes} bytes (PCW_WRITER_BUFFER_BYTES)"
                )
        reopened_ts = writer.db_reopened_ts
        if reopened_ts is not None and inputs.now_s - reopened_ts <= DB_REOPENED_PROBLEM_S:
            problems.append(f"{writer.db_reopened_reason} (at {utc_text(reopened_ts)})")
        if writer_age_s is not None and writer_age_s > max_writer_status_age_s(inputs.interval_s):
            problems.append(f"the writer's status is {writer_age_s:.0f} s old")
    if inputs.db_problem is not None:
        problems.append(inputs.db_problem)
    problems.extend(gpu_error_problem(gpu_error) for gpu_error in inputs.gpu_errors)
    status = "down" if readings_stopped else "degraded" if problems else "ok"
    return {
        "status": status,
        "last_tick_age_s": None if tick_age_s is None else round(tick_age_s, 3),
        "last_tick_source": inputs.last_tick_source,
        "writer": {
            "state": None if writer is None else writer.state,
            "updated_age_s": None if writer_age_s is None else round(writer_age_s, 3),
            "last_error": None if writer is None else writer.last_error,
            **{name: None if writer is None else getattr(writer, name) for name in WRITER_COUNTERS},
        },
        "db_bytes": inputs.db_bytes,
        "malformed_messages": inputs.malformed_messages,
        "websocket_clients": inputs.websocket_clients,
        "internal_errors": inputs.internal_errors,
        "gpu_errors": list(inputs.gpu_errors),
        "stale_hosts": [
            {
                "host": host.host,
                "last_seen_ts": host.last_seen_ts,
                "stale_since_ts": host.stale_since_ts,
                "interval_s": host.interval_s,
            }
            for host in stale_hosts
        ],
        "problems": problems,
    }
