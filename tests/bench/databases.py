"""The synthetic history files, generated once and cached, and the generator's own figures.

A cached file is named by its parameters, the schema version, the rollup levels and the
generator's version, so that a file of another layout is never read as this one; a change to
how the writer fills the same tables needs `--regenerate`. Beside it, NAME.json keeps how long it
took to generate.
"""

from __future__ import annotations

import json
import logging
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from common.schema import ROLLUP_LEVELS_S, SCHEMA_VERSION
from services.writer.store import file_bytes
from tests.bench import generate
from tests.bench.settings import FileSpec, Sizes
from tests.bench.table import Row, times

log = logging.getLogger(__name__)

SMALL_TARGET_S = 60.0


@dataclass(frozen=True)
class Generated:
    """A history file ready to read: where it is, what it holds, what it cost to make."""

    spec: FileSpec
    path: Path
    readings: int
    seconds: float
    cached: bool


def cache_path(cache: Path, spec: FileSpec) -> Path:
    """Return where the file for `spec` is cached."""
    levels = "_".join(str(level_s) for level_s in ROLLUP_LEVELS_S)
    key = (
        f"d{spec.days:g}-g{spec.gpus}-h{spec.hosts}-i{spec.interval_s:g}"
        f"-schema{SCHEMA_VERSION}-rollups{levels}-gen{generate.GENERATOR_VERSION}"
    )
    return cache / f"history-{key}.db"


def ensure(cache: Path, spec: FileSpec, regenerate: bool = False) -> Generated:
    """Return the cached file for spec, generating it first when absent (or asked to)."""
    path = cache_path(cache, spec)
    sidecar = path.with_suffix(".json")
    if path.exists() and sidecar.exists() and not regenerate:
        facts = json.loads(sidecar.read_text())
        return Generated(spec, path, facts["readings"], facts["seconds"], cached=True)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    for stale in (path, sidecar, *cache.glob(partial.name + "*")):
        stale.unlink(missing_ok=True)
    log.info("generating %s: %s", spec.name, spec.describe())
    started = time.perf_counter()
    try:
        readings = generate.generate(partial, spec.days, spec.gpus, spec.hosts, spec.interval_s)
    except BaseException:
        for stale in cache.glob(partial.name + "*"):
            stale.unlink(missing_ok=True)
        raise
    seconds = time.perf_counter() - started
    # Store.close() was the last connection: SQLite checkpointed and removed the WAL.
    partial.replace(path)
    sidecar.write_text(json.dumps({"readings": readings, "seconds": seconds}))
    log.info("generated %s in %.1f s", spec.name, seconds)
    return Generated(spec, path, readings, seconds, cached=False)


def simulated_seconds_per_reading(work: Path, spec: FileSpec, readings: int) -> float:
    """Time the slow generator (simulated NVML) on a slice of spec of about `readings`."""
    days = readings / (spec.gpus * spec.hosts * 86400 / spec.interval_s)
    out = work / f"simulated-{spec.hosts}x{spec.gpus}.db"
    started = time.perf_counter()
    written = generate.generate(out, days, spec.gpus, spec.hosts, spec.interval_s, fast=False)
    seconds = time.perf_counter() - started
    for path in (out, *out.parent.glob(out.name + "-*")):
        path.unlink(missing_ok=True)
    return seconds / max(written, 1)


def generator_rows(sizes: Sizes, files: list[Generated], work: Path) -> list[Row]:
    """Return the generator's rows: each file's time against the slow path extrapolated."""
    slice_readings = int(sizes.simulated_days * 86400 / sizes.small.interval_s) * sizes.small.gpus
    rows = []
    for item in files:
        per_reading_s = simulated_seconds_per_reading(work, item.spec, slice_readings)
        baseline_s = per_reading_s * item.readings
        small = item.spec == sizes.small
        cached = " (cached)" if item.cached else ""
        rows.append(
            Row(
                f"generator, {item.spec.name}",
                f"{item.seconds:,.1f} s{cached}, {item.readings / item.seconds:,.0f} readings/s",
                f"{baseline_s:,.0f} s via simulated NVML (extrapolated)",
                times(baseline_s / item.seconds),
                f"< {SMALL_TARGET_S:g} s" if small else "report",
                (item.seconds < SMALL_TARGET_S) if small else None,
            )
        )
    return rows


def bytes_per_reading(item: Generated) -> tuple[float, float]:
    """Return (whole file incl. WAL, raw samples table alone) in bytes per stored reading.

    The file is checkpointed first, so the WAL holds nothing the file does not.
    """
    conn = sqlite3.connect(item.path, isolation_level=None)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
        readings = conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        samples_bytes = conn.execute(
            "SELECT sum(pgsize) FROM dbstat WHERE name = 'samples'"
        ).fetchone()[0]
    finally:
        conn.close()
    return file_bytes(item.path) / readings, samples_bytes / readings
