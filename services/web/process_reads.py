"""Read the processes on a GPU at a tick, and the process spans a usage range covers.

Jobs for Store.call(); the usage job is a range read (long=True).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from typing import Any

from common.schema import KIND_CODES, LIST_KNOWN_PROC_ID
from services.web.gpu_reads import read_gpu, read_gpus
from services.web.rows import GpuRow, ProcessList
from services.web.usage import UsageSpan, usage_rows

CHAIN_GAP_INTERVALS = 1.5  # spans this close (in intervals) are one unbroken presence
KIND_NAMES = {code: name for name, code in KIND_CODES.items()}

TICK_AT_SQL = "SELECT ts FROM samples WHERE gpu_id = ? AND ts <= ? ORDER BY ts DESC LIMIT 1"
LATEST_TICK_SQL = "SELECT ts FROM samples WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"
LIST_KNOWN_SQL = (
    "SELECT 1 FROM proc_spans WHERE gpu_id = ?1 AND end_ts >= ?2 AND start_ts <= ?2"
    f" AND proc_id = {LIST_KNOWN_PROC_ID} LIMIT 1"
)
# By the end index (the unary + keeps the primary key out): at the newest tick, the dashboard's
# every poll, only the spans still open are read, not the GPU's whole history of starts.
PROCESSES_AT_SQL = (
    "SELECT s.proc_id, s.kind, s.used_mem_bytes, i.pid, i.visible, i.name, i.cmdline, i.user,"
    " i.container_id, i.container_name FROM proc_spans AS s"
    " JOIN proc_identities AS i ON i.proc_id = s.proc_id"
    " WHERE s.gpu_id = ?1 AND s.end_ts >= ?2 AND +s.start_ts <= ?2"
    f" AND s.proc_id != {LIST_KNOWN_PROC_ID} ORDER BY i.pid, s.kind"
)
# Walks the GPU's spans back from ts (key order); the caller stops at the first break.
CHAIN_SQL = (
    "SELECT start_ts, end_ts FROM proc_spans WHERE gpu_id = ?1 AND start_ts <= ?3"
    " AND proc_id = ?2 ORDER BY start_ts DESC"
)
USAGE_KEY_SQL = {
    "user": "i.user",
    "process": "i.name",
    "container": "coalesce(i.container_name, i.container_id)",
}


def read_process_list(conn: sqlite3.Connection, gpu: GpuRow, ts: float | None) -> ProcessList:
    """Return the GPU's processes at the tick ts, each with since when it has been there."""
    if ts is None:
        return ProcessList(gpu, None, None)
    if conn.execute(LIST_KNOWN_SQL, (gpu.gpu_id, ts)).fetchone() is None:
        return ProcessList(gpu, ts, None)
    gap_s = CHAIN_GAP_INTERVALS * gpu.sampling_interval_s
    processes = []
    for proc_id, kind, used, pid, visible, name, cmdline, user, cid, cname in conn.execute(
        PROCESSES_AT_SQL, (gpu.gpu_id, ts)
    ).fetchall():
        since_ts = ts
        for start_ts, end_ts in conn.execute(CHAIN_SQL, (gpu.gpu_id, proc_id, ts)):
            if end_ts + gap_s < since_ts:
                break
            since_ts = min(since_ts, start_ts)
        processes.append(
            {
                "pid": pid,
                "kind": KIND_NAMES.get(kind, "compute"),
                "used_mem_bytes": used,
                "visible": bool(visible),
                "name": name,
                "cmdline": cmdline,
                "user": user,
                "container_id": cid,
                "container_name": cname,
                "since_ts": since_ts,
            }
        )
    return ProcessList(gpu, ts, processes)


def processes_job(gpu_uuid: str, at_s: float | None) -> Callable[[sqlite3.Connection], ProcessList]:
    """Return a job reading a GPU's processes at its newest tick, or at the tick at or before at_s.

    The answer's gpu is None when the file does not know the GPU.
    """

    def job(conn: sqlite3.Connection) -> ProcessList:
        gpu = read_gpu(conn, gpu_uuid)
        if gpu is None:
            return ProcessList(None, None, None)
        if at_s is None:
            found = conn.execute(LATEST_TICK_SQL, (gpu.gpu_id,)).fetchone()
        else:
            found = conn.execute(TICK_AT_SQL, (gpu.gpu_id, at_s)).fetchone()
        return read_process_list(conn, gpu, None if found is None else found[0])

    return job


def usage_job(
    from_s: float, to_s: float, by: str, gpu_uuids: tuple[str, ...] = ()
) -> Callable[[sqlite3.Connection], list[dict[str, Any]]]:
    """Return a job adding up usage per key (usage.usage_rows) over [from_s, to_s), on the GPUs
    named (none named: all).

    The spans are summed as they are read, in the reader thread: a long range of short jobs
    has many, which would hold the event loop and sit in memory all at once.
    """
    sql = (
        f"SELECT {USAGE_KEY_SQL[by]}, s.start_ts, s.end_ts, s.used_mem_bytes FROM proc_spans AS s"
        " JOIN proc_identities AS i ON i.proc_id = s.proc_id"
        " WHERE s.gpu_id = ? AND s.end_ts >= ? AND s.start_ts < ?"
    )

    def spans(conn: sqlite3.Connection) -> Iterator[UsageSpan]:
        for gpu in read_gpus(conn):
            interval_s = gpu.sampling_interval_s
            if gpu.last_ts + interval_s <= from_s or gpu.first_ts >= to_s:
                continue
            if gpu_uuids and gpu.gpu_uuid not in gpu_uuids:
                continue
            for key, start_ts, end_ts, used in conn.execute(
                sql, (gpu.gpu_id, from_s - interval_s, to_s)
            ):
                yield UsageSpan(gpu.gpu_uuid, key, start_ts, end_ts, interval_s, used)

    def job(conn: sqlite3.Connection) -> list[dict[str, Any]]:
        return usage_rows(spans(conn), from_s, to_s)

    return job
