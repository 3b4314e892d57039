"""History through the real HTTP endpoint against the naive GROUP BY over a plain table.

The web process runs as users run it (`python -m services.web`) on a generated file. Each case
asks /api/v1/history for one range, for one GPU or all GPUs, as the dashboard does (500 points,
the four metrics it charts, the default columns shape), and reads the whole answer, gzip and
all, as a browser would. The rows held to a target time the first request for a range: the
web process runs with PCW_HISTORY_CACHE_BYTES=0, so that every request reads and encodes its
buckets whole, as the first one after a start (or after the cache dropped them) does; SQLite's
and the kernel's page caches stay warm, as they are on a running hub. A second web process
with the history cache at its default gives the "warm cache" rows of the all-GPU cases, shown
for context: a repeated request that reads only its open edge; a third, without history cache
and with PCW_HISTORY_READERS=1, the "one reader thread" rows: the cold reads on one range-read
thread, as before an answer shared its GPUs between threads. The baseline runs in this
process with sqlite3: one GROUP BY CAST(ts / step AS INTEGER) for the same metrics, with the
step the endpoint chose, over what a plain design would keep: a rowid table of the same
readings (the four metrics) with an index on the time, built once per file beside it (`plain`
below; the 64-GPU file's 16.6 M readings would take minutes to copy, so its baseline is the
same query over the file's `samples`, keyed on (gpu_id, ts), which the notes say).
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from common.config import load_config
from services.web.buckets import choose_step_s
from tests.bench.databases import Generated
from tests.bench.procs import log_tail, serving_web
from tests.bench.settings import Sizes
from tests.bench.table import Report, Row, failed_row, median, ms, p99, times

# PCW_HISTORY_READERS's default, which the "one reader thread" rows are compared with
DEFAULT_READERS = load_config({"PCW_DB_PATH": "/nonexistent/bench.db"}).history_readers
log = logging.getLogger(__name__)

POINTS = 500
# What the dashboard charts, and so asks for (services/web/static/js/charts.js, CHARTS).
METRICS = ("util_gpu_pct", "temp_c", "mem_used_bytes", "power_w")
LIMIT_MS = {"8-GPU file": 30.0, "64-GPU file": 60.0}
MIN_RATIO = 25.0
PLAIN_MAX_READINGS = 2_000_000  # files up to this get the plain-table baseline
# The web process's settings: the target rows time every read whole (no history cache, as the
# first request for a range); the warm rows keep the default cache, so that the requests after
# the first read only the open edge of their range.
COLD_ENV = {"PCW_SOURCE": "simulated", "PCW_HISTORY_CACHE_BYTES": "0"}
WARM_ENV = {"PCW_SOURCE": "simulated"}
WARM_SUFFIX = ", warm history cache"
# Context for the target rows: the same cold reads on one range-read thread, as before a
# history answer shared its GPUs between PCW_HISTORY_READERS threads (default 2).
ONE_THREAD_ENV = {**COLD_ENV, "PCW_HISTORY_READERS": "1"}
ONE_THREAD_SUFFIX = ", one reader thread"
WARMUP_UNDER_S = 1.0  # a first run faster than this only warms caches and is not counted
REQUEST_TIMEOUT_S = 120.0
_AGGREGATES = ", ".join(f"avg({m}), max({m})" for m in METRICS)
NAIVE_ONE_SQL = (
    f"SELECT CAST(ts / ?1 AS INTEGER) AS bucket, count(*), {_AGGREGATES} FROM samples "
    "WHERE gpu_id = ?2 AND ts >= ?3 AND ts < ?4 GROUP BY bucket"
)
NAIVE_ALL_SQL = (
    f"SELECT gpu_id, CAST(ts / ?1 AS INTEGER) AS bucket, count(*), {_AGGREGATES} FROM samples "
    "WHERE ts >= ?2 AND ts < ?3 GROUP BY gpu_id, bucket"
)
PLAIN_SQL = (
    "CREATE TABLE samples (gpu_id INTEGER NOT NULL, ts REAL NOT NULL, "
    + ", ".join(f"{m} {'REAL' if m == 'power_w' else 'INTEGER'}" for m in METRICS)
    + ");"
    f"INSERT INTO samples SELECT gpu_id, ts, {', '.join(METRICS)} FROM source.samples ORDER BY ts;"
    "CREATE INDEX samples_by_ts ON samples (ts);"
)


def plain_copy(item: Generated, work: Path) -> Path | None:
    """Return a file holding the item's readings as a plain table indexed on time, or None
    for a file too big to copy in the bench's time."""
    if item.readings > PLAIN_MAX_READINGS:
        return None
    path = work / f"plain-{item.path.stem}.db"
    if not path.exists():
        conn = sqlite3.connect(path)
        try:
            conn.execute("ATTACH DATABASE ? AS source", (f"file:{item.path}?mode=ro",))
            conn.executescript(PLAIN_SQL)
        finally:
            conn.close()
    return path


@dataclass(frozen=True)
class Timings:
    """The timed runs of one case, in seconds, and what the last answer was."""

    seconds: list[float]
    status: int = 200
    answer_bytes: int = 0

    def shown(self) -> str:
        """Return median and p99 in words."""
        if self.status != 200:
            return f"HTTP {self.status} after {ms(median(self.seconds))}"
        return f"{ms(median(self.seconds))} (p99 {ms(p99(self.seconds))})"


def repeat(run: Callable[[], float], reps: int, budget_s: float) -> list[float]:
    """Time run() up to `reps` times within budget_s (at least once), the first as a warm-up."""
    started = time.monotonic()
    first = run()
    seconds = [] if first < WARMUP_UNDER_S else [first]
    while len(seconds) < reps and (not seconds or time.monotonic() - started < budget_s):
        seconds.append(run())
    return seconds


async def repeat_async(
    run: Callable[[], Awaitable[float]], reps: int, budget_s: float
) -> list[float]:
    """Like repeat(), for a coroutine."""
    started = time.monotonic()
    first = await run()
    seconds = [] if first < WARMUP_UNDER_S else [first]
    while len(seconds) < reps and (not seconds or time.monotonic() - started < budget_s):
        seconds.append(await run())
    return seconds


async def time_endpoint(
    session: aiohttp.ClientSession, url: str, params: list[tuple[str, str]], sizes: Sizes
) -> Timings:
    """Time GET url?params until the whole answer is read."""
    last = {"status": 0, "bytes": 0}

    async def once() -> float:
        started = time.perf_counter()
        async with session.get(url, params=params) as response:
            body = await response.read()
        elapsed = time.perf_counter() - started
        last.update(status=response.status, bytes=len(body))
        return elapsed

    seconds = await repeat_async(once, sizes.history_reps, sizes.history_budget_s)
    return Timings(seconds, last["status"], last["bytes"])


def time_naive(
    conn: sqlite3.Connection, sql: str, args: tuple[object, ...], sizes: Sizes
) -> Timings:
    """Time the naive query until all of its rows are fetched."""

    def once() -> float:
        started = time.perf_counter()
        conn.execute(sql, args).fetchall()
        return time.perf_counter() - started

    return Timings(repeat(once, sizes.history_reps, sizes.history_budget_s))


def run(sizes: Sizes, files: list[Generated], work: Path, report: Report) -> None:
    """Measure every range and scope on every file."""
    for item in files:
        measure_file(sizes, item, work, report)


@dataclass(frozen=True)
class Case:
    """One request of the dashboard and its naive equivalent."""

    figure: str
    scope: str
    limit_ms: float
    params: list[tuple[str, str]]
    naive_sql: str
    naive_args: tuple[object, ...]
    step_s: int


def cases(sizes: Sizes, item: Generated, last_ts: float, uuid: str, gpu_id: int) -> list[Case]:
    """Return every range and scope for one file, each range ending just after its last reading."""
    made = []
    for label, span_s in sizes.history_ranges_s:
        to_s = last_ts + item.spec.interval_s
        from_s = to_s - span_s
        step_s = choose_step_s(from_s, to_s, POINTS)
        window = [
            ("from", f"{from_s:.0f}"),
            ("to", f"{to_s:.0f}"),
            ("points", str(POINTS)),
            *(("metric", metric) for metric in METRICS),
        ]
        one = (step_s, gpu_id, from_s, to_s)
        every = (step_s, from_s, to_s)
        for scope, params, sql, args in (
            ("one GPU", [("gpu", uuid), *window], NAIVE_ONE_SQL, one),
            ("all GPUs", window, NAIVE_ALL_SQL, every),
        ):
            figure = f"history {label}, {scope}, {item.spec.name}"
            made.append(Case(figure, scope, LIMIT_MS[item.spec.name], params, sql, args, step_s))
    return made


def measure_file(sizes: Sizes, item: Generated, work: Path, report: Report) -> None:
    """Start the web process on one file and time each case against the naive query."""
    conn = sqlite3.connect(f"file:{item.path}?mode=ro", uri=True)
    plain = plain_copy(item, work)
    naive = conn if plain is None else sqlite3.connect(f"file:{plain}?mode=ro", uri=True)
    report.note(
        f"history naive baseline, {item.spec.name}: "
        + ("`samples` of the file itself" if plain is None else "a plain table indexed on ts")
    )
    try:
        last_ts, uuid, gpu_id = conn.execute(
            "SELECT (SELECT max(last_ts) FROM gpus), gpu_uuid, gpu_id FROM gpus "
            "ORDER BY gpu_id LIMIT 1"
        ).fetchone()
        todo = cases(sizes, item, float(last_ts), uuid, gpu_id)
        gpus = item.spec.gpus * item.spec.hosts
        log_path = work / f"web-history-{gpus}.log"
        with serving_web(item.path, log_path, **COLD_ENV) as url:
            naive_times, cold_times = asyncio.run(
                _measure(sizes, todo, naive, url, log_path, report, keyed=conn)
            )
        for env, suffix, compare in (
            (WARM_ENV, WARM_SUFFIX, None),
            (ONE_THREAD_ENV, ONE_THREAD_SUFFIX, cold_times),
        ):
            again_log = work / f"web-history-{gpus}{suffix.replace(' ', '-').replace(',', '')}.log"
            with serving_web(item.path, again_log, **env) as url:
                asyncio.run(
                    _measure_again(
                        sizes, todo, naive_times, url, again_log, report, suffix, compare
                    )
                )
    finally:
        if naive is not conn:
            naive.close()
        conn.close()


async def _measure(
    sizes: Sizes,
    todo: list[Case],
    conn: sqlite3.Connection,
    url: str,
    log_path: Path,
    report: Report,
    keyed: sqlite3.Connection | None = None,
) -> tuple[dict[str, Timings], dict[str, Timings]]:
    """Time each case (on a web process without history cache: the target rows); with `keyed`
    (the file itself, where `conn` is the plain copy), note the naive query over the file's own
    `samples` too, keyed on (gpu_id, ts), for all GPUs. Return the naive and the endpoint
    timings by figure."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    naive_times: dict[str, Timings] = {}
    endpoint_times: dict[str, Timings] = {}
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for case in todo:
            log.info("%s", case.figure)
            try:
                endpoint = await time_endpoint(session, url + "/api/v1/history", case.params, sizes)
                naive = time_naive(conn, case.naive_sql, case.naive_args, sizes)
            except (aiohttp.ClientError, sqlite3.Error, TimeoutError) as error:
                log.error("%s failed: %s\n%s", case.figure, error, log_tail(log_path))
                report.add(failed_row(case.figure, error))
                continue
            naive_times[case.figure] = naive
            endpoint_times[case.figure] = endpoint
            report.add(_row(case.figure, endpoint, naive, case.limit_ms, case.scope))
            report.note(
                f"{case.figure}: {len(endpoint.seconds)} timed requests without history cache"
                f" ({endpoint.answer_bytes:,} bytes of JSON each, step {case.step_s} s),"
                f" {len(naive.seconds)} naive queries"
            )
            if keyed is not None and keyed is not conn and case.scope == "all GPUs":
                other = time_naive(keyed, case.naive_sql, case.naive_args, sizes)
                ratio = median(other.seconds) / median(endpoint.seconds)
                report.note(
                    f"{case.figure}: the naive query over the file's `samples` (key gpu_id, ts)"
                    f" {other.shown()}, {times(ratio)} the endpoint"
                )
    return naive_times, endpoint_times


async def _measure_again(
    sizes: Sizes,
    todo: list[Case],
    naive_times: dict[str, Timings],
    url: str,
    log_path: Path,
    report: Report,
    suffix: str,
    compare: dict[str, Timings] | None,
) -> None:
    """Time the all-GPU cases again on another web process (with its history cache, or on one
    reader thread): rows without a target, against the naive timings of the cold pass (the
    same query); with `compare`, note how the target row's time compares with this one."""
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        for case in todo:
            naive = naive_times.get(case.figure)
            if case.scope != "all GPUs" or naive is None:
                continue
            figure = case.figure + suffix
            log.info("%s", figure)
            try:
                endpoint = await time_endpoint(session, url + "/api/v1/history", case.params, sizes)
            except (aiohttp.ClientError, TimeoutError) as error:
                log.error("%s failed: %s\n%s", figure, error, log_tail(log_path))
                report.add(failed_row(figure, error))
                continue
            ratio = median(naive.seconds) / median(endpoint.seconds)
            report.add(Row(figure, endpoint.shown(), naive.shown(), times(ratio)))
            target = None if compare is None else compare.get(case.figure)
            if target is not None:
                speedup = median(endpoint.seconds) / median(target.seconds)
                report.note(
                    f"{case.figure}: {target.shown()} on up to {DEFAULT_READERS} reader threads"
                    " (the default),"
                    f" {endpoint.shown()} on one; one thread's time / the default's:"
                    f" {times(speedup)} (not paired: run one after the other)"
                )


def _row(figure: str, endpoint: Timings, naive: Timings, limit_ms: float, scope: str) -> Row:
    value_s, naive_s = median(endpoint.seconds), median(naive.seconds)
    ratio = naive_s / value_s
    within = endpoint.status == 200 and value_s * 1000 <= limit_ms
    if scope == "all GPUs":
        target = f"<= {limit_ms:g} ms, >= {MIN_RATIO:g}x"
        met = within and ratio >= MIN_RATIO
    else:
        target = f"<= {limit_ms:g} ms"
        met = within
    return Row(figure, endpoint.shown(), naive.shown(), times(ratio), target, met)
