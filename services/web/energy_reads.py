"""Read each GPU's energy over a range, summed by services/web/energy.py.

A job for Store.call() (a range read: long=True), and the SQL it runs. The range is cut into
whole energy buckets (table energy_buckets, kept by services/writer/energy_buckets.py), coarsest
first, summed for every GPU in one query, and at most two edges shorter than the finest bucket,
walked from the raw readings. Both count each reading's pair as common.energy_pairs.integrate
does, so the answer is the walk over every reading of the range (full_walk_job, kept as the
oracle of the tests and the benchmark's baseline) up to the order of the float additions.
"""

from __future__ import annotations

import itertools
import math
import sqlite3
from collections.abc import Callable, Sequence

from common.energy_pairs import BEFORE_SQL, READINGS_SQL, EnergySums, integrate
from common.schema import ENERGY_BUCKET_LEVELS_S, ENERGY_MAX_GAP_INTERVALS
from services.web.energy import GpuEnergy
from services.web.gpu_reads import read_gpus
from services.web.rows import GpuRow

# The whole buckets of one level in [?, ?) of every GPU, for each segment (an OR of them): the GPU
# table drives the join (CROSS JOIN keeps SQLite from reordering it) and is read in gpu_id order
# (NOT INDEXED: not by its UUID index), so each segment of a GPU is one range of the (level_s,
# gpu_id, ts) key and the GROUP BY needs no sort.
_SEGMENT_SQL = "(b.level_s = ? AND b.ts >= ? AND b.ts < ?)"
_BUCKETS_SQL = (
    "SELECT g.gpu_id, total(b.counter_j), sum(b.counter_pairs), total(b.power_j),"
    " sum(b.power_pairs), max(b.counted_gap_max_s), min(b.skipped_gap_min_s)"
    " FROM gpus AS g NOT INDEXED CROSS JOIN energy_buckets AS b ON b.gpu_id = g.gpu_id AND ({})"
    " GROUP BY g.gpu_id"
)

# Every GPU's readings in [?2, ?3) and the (at most two) before ?2 that their first pairs need
# (BEFORE_SQL's, for all GPUs at once), by GPU in ts order: one query per edge, not one per GPU.
# The GPU table is read in gpu_id order (NOT INDEXED), not by its UUID index: less to sort.
_EDGE_SQL = (
    "SELECT s.gpu_id, s.ts, s.energy_j, s.power_w, s.error FROM gpus AS g NOT INDEXED"
    " CROSS JOIN samples AS s"
    " ON s.gpu_id = g.gpu_id AND s.ts IN ("
    "(SELECT ts FROM samples WHERE gpu_id = g.gpu_id AND ts < ?2 ORDER BY ts DESC LIMIT 1),"
    " (SELECT ts FROM samples WHERE gpu_id = g.gpu_id AND ts < ?2 AND error IS NULL"
    " ORDER BY ts DESC LIMIT 1))"
    " UNION ALL SELECT s.gpu_id, s.ts, s.energy_j, s.power_w, s.error FROM gpus AS g NOT INDEXED"
    " CROSS JOIN samples AS s ON s.gpu_id = g.gpu_id AND s.ts >= ?2 AND s.ts < ?3"
    " ORDER BY 1, 2"
)

Segment = tuple[int, float, float]  # level_s, first bucket's start, last bucket's end


def plan_range(from_s: float, to_s: float) -> tuple[list[Segment], list[tuple[float, float]]]:
    """Cut [from_s, to_s) into runs of whole buckets, coarsest level first, and what is left:
    at most two edges (from, to), each shorter than the finest bucket, to walk raw."""
    segments: list[Segment] = []
    edges: list[tuple[float, float]] = []

    def cut(lo: float, hi: float, level: int) -> None:
        if lo >= hi:
            return
        if level < 0:
            edges.append((lo, hi))
            return
        level_s = ENERGY_BUCKET_LEVELS_S[level]
        first = float(math.ceil(lo / level_s) * level_s)
        end = float(math.floor(hi / level_s) * level_s)
        first = first + level_s if first < lo else first  # as bucket_start: exact bounds
        end = end - level_s if end > hi else end
        if first >= end:
            cut(lo, hi, level - 1)
            return
        segments.append((level_s, first, end))
        cut(lo, first, level - 1)
        cut(end, hi, level - 1)

    cut(from_s, to_s, len(ENERGY_BUCKET_LEVELS_S) - 1)
    return segments, sorted(edges)


def bucket_sums(conn: sqlite3.Connection, segments: list[Segment]) -> dict[int, EnergySums]:
    """Return, per GPU, the sums of its buckets in the segments."""
    if not segments:
        return {}
    sql = _BUCKETS_SQL.format(" OR ".join([_SEGMENT_SQL] * len(segments)))
    params = [value for segment in segments for value in segment]
    return {row[0]: EnergySums(*row[1:]) for row in conn.execute(sql, params)}


def edge_sums(
    conn: sqlite3.Connection, lo: float, hi: float, intervals_s: dict[int, float]
) -> dict[int, EnergySums]:
    """Return, per GPU of intervals_s (gpu_id: its interval), the walk over [lo, hi)."""
    rows = conn.execute(_EDGE_SQL, (None, lo, hi)).fetchall()
    return {
        gpu_id: integrate((row[1:] for row in readings), intervals_s[gpu_id])
        for gpu_id, readings in itertools.groupby(rows, key=lambda row: row[0])
        if gpu_id in intervals_s
    }


def walk(
    conn: sqlite3.Connection, gpu_id: int, lo: float, hi: float, interval_s: float
) -> EnergySums:
    """Return the walk over a GPU's readings in [lo, hi), each from the reading before it."""
    before = conn.execute(BEFORE_SQL, (gpu_id, lo)).fetchall()
    rows = conn.execute(READINGS_SQL, (gpu_id, lo, hi))
    return integrate(itertools.chain(before, rows), interval_s)


def _in_range(gpu: GpuRow, from_s: float, to_s: float, hosts: Sequence[str]) -> bool:
    if hosts and gpu.host not in hosts:
        return False
    return not (gpu.last_ts < from_s or gpu.first_ts >= to_s)


def _gpu_energy(gpu: GpuRow, sums: EnergySums) -> GpuEnergy:
    return GpuEnergy(
        gpu.host,
        gpu.gpu_uuid,
        gpu.gpu_index,
        gpu.gpu_name,
        sums.counter_j,
        sums.counter_pairs,
        sums.power_j,
        sums.power_pairs,
    )


def energy_job(
    from_s: float, to_s: float, hosts: Sequence[str]
) -> Callable[[sqlite3.Connection], list[GpuEnergy]]:
    """Return a job reading each GPU's energy up to each of its readings inside [from_s, to_s).

    Each reading in the range counts the energy since the reading before it, which may be
    before from_s (as the `energy` view's delta_j): consecutive ranges add up to their union.
    GPUs with a reading in the range, of the given hosts (all hosts when none is given). A GPU
    whose buckets were made under another interval that would count a power pair otherwise
    (its interval changed across a gap of about two intervals) is walked whole.
    """
    segments, edges = plan_range(from_s, to_s)

    def job(conn: sqlite3.Connection) -> list[GpuEnergy]:
        gpus = [gpu for gpu in read_gpus(conn) if _in_range(gpu, from_s, to_s, hosts)]
        if not gpus:
            return []
        intervals_s = {gpu.gpu_id: gpu.sampling_interval_s for gpu in gpus}
        parts = [bucket_sums(conn, segments)]
        parts += [edge_sums(conn, lo, hi, intervals_s) for lo, hi in edges]
        answer = []
        for gpu in gpus:
            interval_s = intervals_s[gpu.gpu_id]
            sums = EnergySums()
            for part in parts:
                sums = sums + part.get(gpu.gpu_id, EnergySums())
            if not sums.hold_for(ENERGY_MAX_GAP_INTERVALS * interval_s):
                sums = walk(conn, gpu.gpu_id, from_s, to_s, interval_s)
            answer.append(_gpu_energy(gpu, sums))
        return answer

    return job


def full_walk_job(
    from_s: float, to_s: float, hosts: Sequence[str]
) -> Callable[[sqlite3.Connection], list[GpuEnergy]]:
    """Return energy_job's answer from every raw reading of the range: what it was before the
    buckets, kept as the oracle they are checked against and the benchmark's baseline."""

    def job(conn: sqlite3.Connection) -> list[GpuEnergy]:
        return [
            _gpu_energy(gpu, walk(conn, gpu.gpu_id, from_s, to_s, gpu.sampling_interval_s))
            for gpu in read_gpus(conn)
            if _in_range(gpu, from_s, to_s, hosts)
        ]

    return job
