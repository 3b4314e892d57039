"""Read the GPUs the file knows: the listing, each GPU's newest reading, the UUIDs and hosts.

Jobs for Store.call(): each reads in the one read transaction the Store opens.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from common.metrics import METRIC_NAMES
from services.web.rows import GpuLatest, GpuRow

GPU_COLUMNS = (
    "gpu_id, gpu_uuid, host, gpu_index, gpu_name, pci_bus_id, driver_version, first_ts, last_ts,"
    " interval_s, cuda_version, limits"
)
GPUS_SQL = f"SELECT {GPU_COLUMNS} FROM gpus"
GPU_BY_UUID_SQL = f"SELECT {GPU_COLUMNS} FROM gpus WHERE gpu_uuid = ?"
# One key look-up from the end of the GPU's key range, never a scan.
LATEST_SQL = (
    f"SELECT ts, error, {', '.join(METRIC_NAMES)} FROM samples "
    "WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"
)
# When a GPU's current run of errored readings began: the first reading after its last error-free
# one (its first reading, if it never had one). The subquery walks the GPU's key range back from
# the end and stops at the first error-free row, so it reads the run, never the whole history;
# the outer MIN is one key look-up. Only asked of GPUs whose latest reading is in error.
ERROR_SINCE_SQL = (
    "SELECT MIN(ts) FROM samples WHERE gpu_id = ?1 AND ts > COALESCE("
    "(SELECT ts FROM samples WHERE gpu_id = ?1 AND error IS NULL ORDER BY ts DESC LIMIT 1), -1)"
)

# The newest XID of the GPU: one key look-up from the end of its key range in xid_events.
LAST_XID_SQL = "SELECT ts, code FROM xid_events WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"


def read_gpus(conn: sqlite3.Connection) -> list[GpuRow]:
    """Return every GPU of the file."""
    return [GpuRow(*row) for row in conn.execute(GPUS_SQL).fetchall()]


def read_gpu(conn: sqlite3.Connection, gpu_uuid: str) -> GpuRow | None:
    """Return the GPU of this UUID, None when the file does not know it."""
    row = conn.execute(GPU_BY_UUID_SQL, (gpu_uuid,)).fetchone()
    return None if row is None else GpuRow(*row)


def gpus_with_latest_job() -> Callable[[sqlite3.Connection], list[GpuLatest]]:
    """Return a job reading every GPU with its newest reading, if in error since when, and its
    newest XID."""
    columns = ("ts", "error", *METRIC_NAMES)

    def job(conn: sqlite3.Connection) -> list[GpuLatest]:
        answer = []
        for gpu in read_gpus(conn):
            xid = conn.execute(LAST_XID_SQL, (gpu.gpu_id,)).fetchone()
            last_xid = None if xid is None else (xid[0], xid[1])
            row = conn.execute(LATEST_SQL, (gpu.gpu_id,)).fetchone()
            if row is None:
                answer.append(GpuLatest(gpu, None, None, last_xid))
                continue
            latest = dict(zip(columns, row, strict=True))
            since_ts = None
            if latest["error"] is not None:
                since_ts = conn.execute(ERROR_SINCE_SQL, (gpu.gpu_id,)).fetchone()[0]
            answer.append(GpuLatest(gpu, latest, since_ts, last_xid))
        return answer

    return job


def known_gpus_job() -> Callable[[sqlite3.Connection], tuple[set[str], set[str]]]:
    """Return a job reading the GPU UUIDs and the host names the file knows."""

    def job(conn: sqlite3.Connection) -> tuple[set[str], set[str]]:
        gpus = read_gpus(conn)
        return {gpu.gpu_uuid for gpu in gpus}, {gpu.host for gpu in gpus}

    return job
