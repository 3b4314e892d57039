"""The reference answer of the idle read: each GPU's run found walking back over all of it.

What services/web/idle_reads.py answered before it remembered marks; its tests compare the two.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

from common.idle import Reading, low_util, run_since
from services.web.gpu_reads import read_gpus
from services.web.idle_reads import READINGS_SQL, RUN_SPANS_SQL, coverages, read_latest
from services.web.rows import GpuIdle, GpuRow

# The first reading after the newest one that is not under the utilization threshold.
LOW_UTIL_SINCE_SQL = (
    "SELECT MIN(ts) FROM samples WHERE gpu_id = ?1 AND ts > COALESCE((SELECT ts FROM samples"
    " WHERE gpu_id = ?1 AND (util_gpu_pct IS NULL OR util_gpu_pct >= ?2 OR error IS NOT NULL)"
    " ORDER BY ts DESC LIMIT 1), -1)"
)
RUN_READINGS_SQL = READINGS_SQL + " WHERE gpu_id = ? AND ts >= ? ORDER BY ts DESC"


def whole_run_job(util_pct: float) -> Callable[[sqlite3.Connection], list[GpuIdle]]:
    """Return a job answering as idle_reads.idle_job, each run walked back over in full."""

    def job(conn: sqlite3.Connection) -> list[GpuIdle]:
        return [_gpu_idle(conn, gpu, util_pct) for gpu in read_gpus(conn)]

    return job


def _gpu_idle(conn: sqlite3.Connection, gpu: GpuRow, util_pct: float) -> GpuIdle:
    latest, processes = read_latest(conn, gpu)
    if latest is None or not low_util(latest, util_pct):
        return GpuIdle(gpu, processes, None)
    (low_since_ts,) = conn.execute(LOW_UTIL_SINCE_SQL, (gpu.gpu_id, util_pct)).fetchone()
    known, held = coverages(conn.execute(RUN_SPANS_SQL, (gpu.gpu_id, low_since_ts)))
    readings = (Reading(*row) for row in conn.execute(RUN_READINGS_SQL, (gpu.gpu_id, low_since_ts)))
    return GpuIdle(gpu, processes, run_since(readings, util_pct, known, held))
