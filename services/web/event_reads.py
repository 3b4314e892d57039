"""Read the GPUs' health events and counts over a range: a job for Store.call(long=True).

Per GPU, two key range scans: its health rows from the one before the range to the end of the
range (streamed, never held whole), and its XIDs in the range. At most MAX_EVENTS events are
kept, the newest; `truncated` says that some went.
"""

from __future__ import annotations

import heapq
import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from itertools import chain

from common.schema import HEALTH_STATE_COLUMNS
from services.web.gpu_reads import read_gpus
from services.web.health_events import Counter, Counts, Event, HealthRow, row_events, xid_event
from services.web.rows import GpuRow

MAX_EVENTS = 10_000

# The GPU's rows from the one before the range to the first after it (key look-ups, one scan).
_ROWS_SQL = (
    f"SELECT ts, {', '.join(HEALTH_STATE_COLUMNS)} FROM health_states WHERE gpu_id = ?1"
    " AND ts >= COALESCE((SELECT ts FROM health_states WHERE gpu_id = ?1 AND ts < ?2"
    " ORDER BY ts DESC LIMIT 1), ?2)"
    " AND ts <= COALESCE((SELECT ts FROM health_states WHERE gpu_id = ?1 AND ts > ?3"
    " ORDER BY ts LIMIT 1), ?3) ORDER BY ts"
)
_XIDS_SQL = "SELECT ts, code FROM xid_events WHERE gpu_id = ? AND ts >= ? AND ts <= ? ORDER BY ts"


@dataclass(frozen=True)
class GpuEvents:
    """One GPU's counts over the range."""

    gpu: GpuRow
    counts: Counts


@dataclass(frozen=True)
class EventsRead:
    """The newest events of the asked GPUs (ts order) with each one's GPU, and the counts."""

    events: list[tuple[Event, GpuRow]]
    truncated: bool
    gpus: list[GpuEvents]


def events_job(
    from_s: float, to_s: float, gpu_uuids: tuple[str, ...], hosts: tuple[str, ...]
) -> Callable[[sqlite3.Connection], EventsRead]:
    """Return a job reading the events and counts of the GPUs asked (none named: all)."""

    def job(conn: sqlite3.Connection) -> EventsRead:
        kept: list[tuple[float, int, Event, GpuRow]] = []  # a min-heap of the newest
        seen = 0  # numbers the events, which breaks ties without comparing them
        answer = []
        for gpu in read_gpus(conn):
            if (gpu_uuids and gpu.gpu_uuid not in gpu_uuids) or (hosts and gpu.host not in hosts):
                continue
            counter = Counter(from_s, to_s)
            xids = 0
            for event in chain(
                row_events(_rows(conn, gpu.gpu_id, from_s, to_s, counter), from_s, to_s),
                (
                    xid_event(ts, code)
                    for ts, code in conn.execute(_XIDS_SQL, (gpu.gpu_id, from_s, to_s))
                ),
            ):
                xids += event.kind == "xid"
                seen += 1
                item = (event.ts, seen, event, gpu)
                if len(kept) < MAX_EVENTS:
                    heapq.heappush(kept, item)
                else:
                    heapq.heappushpop(kept, item)
            answer.append(GpuEvents(gpu, counter.counts(xids)))
        kept.sort()
        return EventsRead([(event, gpu) for _, _, event, gpu in kept], seen > len(kept), answer)

    return job


def _rows(
    conn: sqlite3.Connection, gpu_id: int, from_s: float, to_s: float, counter: Counter
) -> Iterator[HealthRow]:
    """Yield the GPU's rows from the one before the range to the one after it, counting each."""
    for ts, *values in conn.execute(_ROWS_SQL, (gpu_id, from_s, to_s)):
        row = HealthRow(ts, values)
        counter.take(row)
        yield row
