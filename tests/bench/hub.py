"""Hub: N simulated hosts (a sampler process each) feeding one writer and one web process.

    python -m tests.bench.hub                       # 2 and 20 hosts, 2 GPUs each, every 0.5 s
    python -m tests.bench.hub --hosts 2,20,50 --interval 1 --seconds 60

For each N: the samplers (`python -m services.sampler`, simulated GPUs, each its own host name
and port pair) and the hub's writer and web (`PCW_SUBSCRIBE` naming every sampler) start as
processes on 127.0.0.1. After a warm-up (every host stored, the web listing every host), the
ticks stored in the file are counted over a window: stored per second, against the ticks the
samplers publish per second (N / interval). CPU of the writer and web over the window, their
RSS at its end, the samplers' RSS, and the median answer time of /api/v1/gpus and
/api/v1/hosts. Then the samplers stop, the writer stores their last ticks, and every tick each
sampler says it published (its "stopped after N ticks" line) is looked for in the file: the
ticks lost.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import re
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.bench.procs import (
    bench_env,
    cpu_seconds,
    free_port,
    http_status,
    memory_bytes,
    running,
    stop,
    wait_until,
)
from tests.bench.table import Report, Row, mb, ms, render_text, times

log = logging.getLogger(__name__)

GPUS_PER_HOST = 2
READY_TIMEOUT_S = 180.0  # 20 Python processes starting on a busy 2-core machine
API_REPS = 20


@dataclass(frozen=True)
class HubFigures:
    """What one run with `hosts` samplers measured; bytes, seconds, ticks."""

    hosts: int
    interval_s: float
    window_s: float
    stored_ticks_per_s: float
    lost_ticks: int
    published_ticks: int
    writer_rss: int
    web_rss: int
    sampler_rss_mean: int
    sampler_rss_total: int
    writer_cpu_per_s: float
    web_cpu_per_s: float
    gpus_answer_s: float
    hosts_answer_s: float

    @property
    def published_per_s(self) -> float:
        """Return the ticks all samplers publish per second."""
        return self.hosts / self.interval_s


def _ports(taken: set[int]) -> int:
    """Return the first of two consecutive free ports, neither already handed out."""
    while True:
        port = free_port(consecutive=2)
        if not {port, port + 1} & taken:
            taken.update((port, port + 1))
            return port


def _stored_readings(db_path: Path) -> dict[str, int]:
    """Return {host: distinct tick times stored} (empty before the file has its tables)."""
    if not db_path.exists():
        return {}
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute("SELECT host, count(DISTINCT ts) FROM readings GROUP BY host")
        return dict(rows.fetchall())
    except sqlite3.OperationalError:
        return {}
    finally:
        conn.close()


def _answer_s(url: str) -> float:
    """Return the median seconds of API_REPS GETs of url (answer read whole)."""
    spent = []
    for _ in range(API_REPS):
        started = time.perf_counter()
        with urllib.request.urlopen(url, timeout=10) as response:
            response.read()
        spent.append(time.perf_counter() - started)
    return statistics.median(spent)


def measure(hosts: int, interval_s: float, window_s: float, work: Path) -> HubFigures:
    """Run N samplers and one hub; return the figures (see the module's docstring)."""
    folder = work / f"hub-{hosts}"
    folder.mkdir(parents=True)
    taken: set[int] = set()
    sampler_envs = []
    for number in range(hosts):
        port = _ports(taken)
        sampler_envs.append(
            bench_env(
                {
                    "PCW_SOURCE": "simulated",
                    "PCW_SIM_GPUS": str(GPUS_PER_HOST),
                    "PCW_INTERVAL_S": str(interval_s),
                    "PCW_HOST_NAME": f"node-{number:03d}",
                    "PCW_PUB_ENDPOINT": f"tcp://127.0.0.1:{port}",
                    "PCW_LOG_LEVEL": "INFO",  # its last line says how many ticks it published
                }
            )
        )
    db_path = folder / "hub.db"
    web_port = _ports(taken)
    hub_env = bench_env(
        {
            "PCW_DB_PATH": str(db_path),
            "PCW_SUBSCRIBE": ",".join(env["PCW_PUB_ENDPOINT"] for env in sampler_envs),
            "PCW_WEB_PORT": str(web_port),
            "PCW_INTERVAL_S": str(interval_s),
            "PCW_HOST_NAME": "hub",
        }
    )
    web_url = f"http://127.0.0.1:{web_port}"
    with contextlib.ExitStack() as stack:
        writer_log, web_log = folder / "writer.log", folder / "web.log"
        writer = stack.enter_context(
            running([sys.executable, "-m", "services.writer"], hub_env, writer_log)
        )
        web = stack.enter_context(running([sys.executable, "-m", "services.web"], hub_env, web_log))
        samplers: list[tuple[subprocess.Popen[bytes], Path]] = []
        for number, env in enumerate(sampler_envs):
            sampler_log = folder / f"sampler-{number:03d}.log"
            process = stack.enter_context(
                running([sys.executable, "-m", "services.sampler"], env, sampler_log)
            )
            samplers.append((process, sampler_log))
        wait_until(
            lambda: len(_stored_readings(db_path)) == hosts,
            READY_TIMEOUT_S,
            f"ticks of all {hosts} hosts stored",
            writer,
            writer_log,
        )
        wait_until(lambda: http_status(web_url + "/healthz") is not None, 30, "the web", web)
        time.sleep(3 * interval_s)

        first = sum(_stored_readings(db_path).values())
        cpu_first = cpu_seconds(writer.pid), cpu_seconds(web.pid)
        started = time.monotonic()
        time.sleep(window_s)
        last = sum(_stored_readings(db_path).values())
        spent_s = time.monotonic() - started
        cpu_last = cpu_seconds(writer.pid), cpu_seconds(web.pid)
        writer_rss, web_rss = memory_bytes(writer.pid)[0], memory_bytes(web.pid)[0]
        sampler_rss = [memory_bytes(process.pid)[0] for process, _ in samplers]
        gpus_answer_s = _answer_s(web_url + "/api/v1/gpus")
        hosts_answer_s = _answer_s(web_url + "/api/v1/hosts")

        for process, _ in samplers:
            stop(process)
        published = {}
        for number, (_, sampler_log) in enumerate(samplers):
            found = re.findall(r"sampler stopped after (\d+) ticks", sampler_log.read_text())
            published[f"node-{number:03d}"] = int(found[-1]) if found else 0
        # the writer stores the samplers' last ticks within its batch age; then stopped, it
        # flushes whatever is left
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: _stored_readings(db_path) == published, 10, "the last ticks")
        stop(writer)
        stored = _stored_readings(db_path)
    return HubFigures(
        hosts=hosts,
        interval_s=interval_s,
        window_s=spent_s,
        stored_ticks_per_s=(last - first) / spent_s,
        lost_ticks=sum(max(0, count - stored.get(host, 0)) for host, count in published.items()),
        published_ticks=sum(published.values()),
        writer_rss=writer_rss,
        web_rss=web_rss,
        sampler_rss_mean=int(statistics.mean(sampler_rss)),
        sampler_rss_total=sum(sampler_rss),
        writer_cpu_per_s=(cpu_last[0] - cpu_first[0]) / spent_s,
        web_cpu_per_s=(cpu_last[1] - cpu_first[1]) / spent_s,
        gpus_answer_s=gpus_answer_s,
        hosts_answer_s=hosts_answer_s,
    )


def add_rows(figures: list[HubFigures], report: Report) -> None:
    """Add each run's rows; memory's baseline is the smallest run's."""
    smallest = figures[0]
    for each in figures:
        name = f"hub, {each.hosts} hosts x {GPUS_PER_HOST} GPUs every {each.interval_s:g} s"
        rate_ratio = each.stored_ticks_per_s / each.published_per_s
        report.add(
            Row(
                f"{name}: ticks stored per s",
                f"{each.stored_ticks_per_s:.2f}/s",
                f"{each.published_per_s:.2f}/s published",
                times(rate_ratio),
                ">= 0.95x",
                rate_ratio >= 0.95,
            )
        )
        report.add(
            Row(
                f"{name}: ticks lost",
                f"{each.lost_ticks} of {each.published_ticks:,}",
                "0",
                "-",
                "0",
                each.lost_ticks == 0,
            )
        )
        for label, value, base in (
            ("RSS of writer", each.writer_rss, smallest.writer_rss),
            ("RSS of web", each.web_rss, smallest.web_rss),
            ("RSS of a sampler (mean)", each.sampler_rss_mean, smallest.sampler_rss_mean),
            ("RSS of all samplers", each.sampler_rss_total, smallest.sampler_rss_total),
        ):
            report.add(
                Row(
                    f"{name}: {label}",
                    mb(value),
                    f"{mb(base)} ({smallest.hosts} hosts)",
                    times(value / base),
                )
            )
        for label, value in (
            ("writer CPU", each.writer_cpu_per_s),
            ("web CPU", each.web_cpu_per_s),
        ):
            report.add(Row(f"{name}: {label}", f"{100 * value:.1f}% of a core", "-", "-"))
        for label, value in (
            ("GET /api/v1/gpus, median", each.gpus_answer_s),
            ("GET /api/v1/hosts, median", each.hosts_answer_s),
        ):
            report.add(Row(f"{name}: {label}", ms(value), "-", "-"))
        report.note(
            f"hub with {each.hosts} hosts: window {each.window_s:.1f} s; "
            f"{each.published_ticks:,} ticks published in all, {each.lost_ticks} lost"
        )


def run(host_counts: list[int], interval_s: float, window_s: float, work: Path) -> Report:
    """Measure each host count in turn; return the report."""
    report = Report([], [])
    figures = []
    for hosts in host_counts:
        log.info("== hub with %d hosts", hosts)
        figures.append(measure(hosts, interval_s, window_s, work))
    add_rows(figures, report)
    return report


def main(argv: list[str] | None = None) -> int:
    """Run the hub benchmark and print its table; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.hub", description=__doc__)
    parser.add_argument("--hosts", default="2,20", help="comma-separated host counts (2,20)")
    parser.add_argument("--interval", type=float, default=0.5, help="seconds between ticks")
    parser.add_argument("--seconds", type=float, default=30.0, help="measured window per run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    host_counts = [int(part) for part in args.hosts.split(",") if part.strip()]
    with tempfile.TemporaryDirectory(prefix="pcw-bench-hub-") as folder:
        report = run(host_counts, args.interval, args.seconds, Path(folder))
    sys.stdout.write(render_text(report.rows) + "".join(f"- {n}\n" for n in report.notes))
    return 0 if all(row.met is not False for row in report.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
