"""/api/v1/energy through the real HTTP endpoint against the full walk over every raw reading.

The web process runs as users run it (`python -m services.web`) on a generated file and answers
from the energy buckets, walking only its range's edges. The baseline is what the endpoint did
before the buckets: services.web.energy_reads.full_walk_job, run in this process with sqlite3 on
the same file (its SQL and its Python walk only, without HTTP or JSON, so the ratio understates
the gain). Each case also checks that both say the same kWh per GPU.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from pathlib import Path

import aiohttp

from services.web.energy_reads import full_walk_job
from tests.bench.databases import Generated
from tests.bench.history import REQUEST_TIMEOUT_S, Timings, repeat, time_endpoint
from tests.bench.procs import log_tail, serving_web
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, failed_row, median, ms, times

log = logging.getLogger(__name__)

RANGES_S = (("24h", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400))
LIMIT_MS = {"8-GPU file": 5.0, "64-GPU file": 20.0}
J_PER_KWH = 3_600_000.0
SAME_KWH_REL = 1e-9


def run(sizes: Sizes, files: list[Generated], work: Path, report: Report) -> None:
    """Measure every range on every file."""
    for item in files:
        measure_file(sizes, item, work, report)


def time_walk(conn: sqlite3.Connection, from_s: float, to_s: float, sizes: Sizes) -> Timings:
    """Time the full walk over the range, in one read transaction as the web's Store runs it."""
    job = full_walk_job(from_s, to_s, ())

    def once() -> float:
        started = time.perf_counter()
        conn.execute("BEGIN")
        try:
            job(conn)
        finally:
            conn.execute("COMMIT")
        return time.perf_counter() - started

    return Timings(repeat(once, sizes.history_reps, sizes.history_budget_s))


def walked_kwh(conn: sqlite3.Connection, from_s: float, to_s: float) -> dict[str, float | None]:
    """Return the full walk's kWh per GPU UUID."""
    return {gpu.gpu_uuid: gpu.kwh for gpu in full_walk_job(from_s, to_s, ())(conn)}


def same_kwh(answer: dict[str, float | None], walked: dict[str, float | None]) -> bool:
    """Return whether the endpoint's kWh per GPU are the walk's, up to float addition order."""
    if answer.keys() != walked.keys():
        return False
    for uuid, kwh in walked.items():
        got = answer[uuid]
        if (got is None) != (kwh is None):
            return False
        if kwh is not None and got is not None and abs(got - kwh) > SAME_KWH_REL * abs(kwh):
            return False
    return True


def measure_file(sizes: Sizes, item: Generated, work: Path, report: Report) -> None:
    """Start the web process on one file and time each range against the full walk."""
    conn = sqlite3.connect(f"file:{item.path}?mode=ro", uri=True, isolation_level=None)
    try:
        last_ts = float(conn.execute("SELECT max(last_ts) FROM gpus").fetchone()[0])
        log_path = work / f"web-energy-{item.spec.gpus * item.spec.hosts}.log"
        with serving_web(item.path, log_path, PCW_SOURCE="simulated") as url:
            asyncio.run(_measure(sizes, item, last_ts, conn, url, log_path, report))
    finally:
        conn.close()


async def _measure(
    sizes: Sizes,
    item: Generated,
    last_ts: float,
    conn: sqlite3.Connection,
    url: str,
    log_path: Path,
    report: Report,
) -> None:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    limit_ms = LIMIT_MS[item.spec.name]
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for label, span_s in RANGES_S:
            to_s = last_ts + item.spec.interval_s
            from_s = to_s - span_s
            figure = f"energy {label}, {item.spec.name}"
            params = [("from", f"{from_s:.0f}"), ("to", f"{to_s:.0f}")]
            log.info("%s", figure)
            try:
                endpoint = await time_endpoint(session, url + "/api/v1/energy", params, sizes)
                async with session.get(url + "/api/v1/energy", params=params) as response:
                    answer = {
                        gpu["gpu_uuid"]: gpu["kwh"] for gpu in (await response.json())["gpus"]
                    }
                walk = time_walk(conn, float(params[0][1]), float(params[1][1]), sizes)
                walked = walked_kwh(conn, float(params[0][1]), float(params[1][1]))
            except (aiohttp.ClientError, sqlite3.Error, TimeoutError) as error:
                log.error("%s failed: %s\n%s", figure, error, log_tail(log_path))
                report.add(failed_row(figure, error))
                continue
            if not same_kwh(answer, walked):
                report.add(failed_row(figure, ValueError("kWh differ from the full walk")))
                continue
            value_s, walk_s = median(endpoint.seconds), median(walk.seconds)
            report.add(
                Row(
                    figure,
                    endpoint.shown(),
                    f"{ms(walk_s)} full walk (SQL + Python, no HTTP)",
                    times(walk_s / value_s),
                    f"<= {limit_ms:g} ms",
                    value_s * 1000 <= limit_ms,
                )
            )
            report.note(
                f"{figure}: {len(endpoint.seconds)} timed requests, {len(walk.seconds)} walks,"
                f" same kWh per GPU as the walk ({len(walked)} GPUs)"
            )
