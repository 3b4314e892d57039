"""Read each GPU's energy readings over a range, summed by services/web/energy.py.

A job for Store.call() (a range read: long=True), and the SQL it runs.
"""

from __future__ import annotations

import itertools
import sqlite3
from collections.abc import Callable, Sequence

from services.web.energy import GpuEnergy, integrate
from services.web.gpu_reads import read_gpus

_ENERGY_COLUMNS = "SELECT ts, energy_j, power_w, error FROM samples"
ENERGY_READINGS_SQL = _ENERGY_COLUMNS + " WHERE gpu_id = ? AND ts >= ? AND ts < ? ORDER BY ts"
# The readings before the range whose pairs with the range's readings are the range's: the last
# one, and the last error-free one (the counter counts across error ticks), in ts order.
ENERGY_BEFORE_SQL = (
    f"SELECT * FROM ({_ENERGY_COLUMNS} WHERE gpu_id = ?1 AND ts < ?2 ORDER BY ts DESC LIMIT 1)"
    f" UNION SELECT * FROM ({_ENERGY_COLUMNS} WHERE gpu_id = ?1 AND ts < ?2 AND error IS NULL"
    " ORDER BY ts DESC LIMIT 1) ORDER BY ts"
)


def energy_job(
    from_s: float, to_s: float, hosts: Sequence[str]
) -> Callable[[sqlite3.Connection], list[GpuEnergy]]:
    """Return a job reading each GPU's energy up to each of its readings inside [from_s, to_s).

    Each reading in the range counts the energy since the reading before it, which may be
    before from_s (as the `energy` view's delta_j): consecutive ranges add up to their union.
    GPUs with a reading in the range, of the given hosts (all hosts when none is given).
    """

    def job(conn: sqlite3.Connection) -> list[GpuEnergy]:
        answer = []
        for gpu in read_gpus(conn):
            if hosts and gpu.host not in hosts:
                continue
            if gpu.last_ts < from_s or gpu.first_ts >= to_s:
                continue
            before = conn.execute(ENERGY_BEFORE_SQL, (gpu.gpu_id, from_s)).fetchall()
            rows = conn.execute(ENERGY_READINGS_SQL, (gpu.gpu_id, from_s, to_s))
            sums = integrate(itertools.chain(before, rows), gpu.sampling_interval_s)
            answer.append(
                GpuEnergy(
                    gpu.host,
                    gpu.gpu_uuid,
                    gpu.gpu_index,
                    gpu.gpu_name,
                    sums.counter_j,
                    sums.counter_pairs,
                    sums.power_j,
                    sums.power_pairs,
                )
            )
        return answer

    return job
