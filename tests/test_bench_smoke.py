"""Benchmarks: smoke runs end to end (crashes only); a full run fails on a missed target."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator

import pytest

from tests.bench import __main__ as bench_main
from tests.bench.__main__ import FAILED_STATUS, MISSED_STATUS
from tests.bench.table import Report, Row, failed_row
from tests.stack import REPO

# Meant to finish in under a minute; the margin is for a busy CI machine.
SMOKE_TIMEOUT_S = 150

HISTORY_ROWS = [
    f"history {span}, {scope}, {name}"
    for name in ("8-GPU file", "64-GPU file")
    for span in ("1h", "24h", "7d", "30d")
    for scope in ("one GPU", "all GPUs")
]
# the all-GPU rows again, with the history cache warm, and read by one thread
HISTORY_VARIANT_ROWS = [
    f"history {span}, all GPUs, {name}, {variant}"
    for name in ("8-GPU file", "64-GPU file")
    for variant in ("warm history cache", "one reader thread")
    for span in ("1h", "24h", "7d", "30d")
]
ENERGY_ROWS = [
    f"energy {span}, {name}"
    for name in ("8-GPU file", "64-GPU file")
    for span in ("24h", "7d", "30d")
]
ROWS = [
    "generator, 8-GPU file",
    "generator, 64-GPU file",
    *HISTORY_ROWS,
    *HISTORY_VARIANT_ROWS,
    *ENERGY_ROWS,
    "ingest, publisher -> writer -> committed rows",
    "ingest, CPU per reading (writer vs fair baseline)",
    "tick -> browser, last of 100 clients, median",
    "tick -> browser, last of 100 clients, p99",
    "server CPU per tick, 100 clients",
    "tick -> browser, last of 1,000 clients, median",
    "tick -> browser, last of 1,000 clients, p99",
    "server CPU per tick, 1,000 clients",
    "sampler CPU per tick, 8 simulated GPUs",
    "RSS of supervisord",
    "RSS of sampler",
    "RSS of writer",
    "RSS of web",
    "RSS of the whole stack (supervisord + 3)",
    "disk per stored reading, 8-GPU file",
    "disk per stored reading, 64-GPU file",
    "replay buffer held, 64-GPU ticks",
    "RSS of a sampler with a full replay buffer, 64-GPU ticks",
    "bytes written per hourly purge, 8-GPU file",
    "bytes written per hourly purge, 64-GPU file",
    "fleet view, 6 GPUs on 2 hosts: navigation -> last row drawn, median",
    "fleet view, 6 GPUs on 2 hosts: main-thread CPU until the last row drawn, median",
    "fleet view, 6 GPUs on 2 hosts: main-thread CPU per live tick of a host, median",
    "fleet view, 6 GPUs on 2 hosts: main-thread CPU per live tick of a host, worst",
    "lighthouse starts (smoke: no audit)",
    "RSS of the whole stack after 0.2 simulated h",
    "RSS slope over the soak's last half",
]


def _table_rows(text: str) -> dict[str, list[str]]:
    """Return the cells of each row of the printed table, by figure."""
    rows = {}
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split(" | ")]
        if len(cells) == 6 and cells[0] != "figure":
            rows[cells[0]] = cells
    return rows


def test_smoke_mode_measures_every_figure(tmp_path):
    markdown = tmp_path / "bench.md"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tests.bench",
            "--smoke",
            "--cache",
            str(tmp_path / "cache"),
            "--markdown",
            str(markdown),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
    )
    shown = f"stdout:\n{result.stdout}\nstderr:\n{result.stderr[-4000:]}"
    assert result.returncode == 0, shown
    rows = _table_rows(result.stdout)
    assert [figure for figure in ROWS if figure not in rows] == [], shown
    for figure in ROWS:
        _figure, value, baseline, ratio, _target, met = rows[figure]
        assert not value.startswith("FAILED"), shown
        assert value and baseline and ratio, shown
        assert met in ("yes", "NO", "-"), shown
    text = markdown.read_text()
    assert "| figure | value | baseline | ratio | target | met? |" in text
    assert "CPUs (nproc)" in text and "SQLite" in text
    assert all(f"| {figure} |" in text for figure in ROWS)


@pytest.fixture(autouse=True)
def _restore_process_state() -> Iterator[None]:
    """Undo what the suite's main() sets for its own process: signal handlers, log levels."""
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGTERM, signal.SIGALRM)}
    level = logging.getLogger("services").level
    yield
    for sig, handler in handlers.items():
        signal.signal(sig, handler)
    logging.getLogger("services").setLevel(level)


def _one_row(met: bool | None) -> Callable[..., int]:
    """Return a section runner that measures one figure whose target is met, missed or absent."""

    def run_sections(_args, _sizes, _work, report: Report) -> int:
        report.add(Row("a figure", "2 s", "1 s", "2.0x", "< 1 s", met))
        return 0

    return run_sections


@pytest.mark.parametrize(
    ("argv", "met", "status"),
    [
        ([], False, MISSED_STATUS),  # full mode: a missed target fails the run
        ([], True, 0),
        ([], None, 0),
        (["--smoke"], False, 0),  # smoke mode: tiny sizes, so crashes only
    ],
)
def test_the_exit_status_follows_the_targets_in_full_mode_only(monkeypatch, argv, met, status):
    monkeypatch.setattr(bench_main, "run_sections", _one_row(met))
    assert bench_main.main([*argv, "--only", "ingest"]) == status


def test_a_figure_that_could_not_be_measured_fails_the_run_in_both_modes(monkeypatch):
    def run_sections(_args, _sizes, _work, report: Report) -> int:
        report.add(failed_row("a figure", RuntimeError("broken")))  # caught inside a section
        return 0

    monkeypatch.setattr(bench_main, "run_sections", run_sections)
    assert bench_main.main(["--only", "ingest"]) == FAILED_STATUS
    assert bench_main.main(["--smoke", "--only", "ingest"]) == FAILED_STATUS
