"""The benchmark suite's smoke mode runs end to end and prints every row, so that it cannot rot."""

from __future__ import annotations

import subprocess
import sys

from tests.stack import REPO

# Meant to finish in under a minute; the margin is for a busy CI machine.
SMOKE_TIMEOUT_S = 150

HISTORY_ROWS = [
    f"history {span}, {scope}, {name}"
    for name in ("8-GPU file", "64-GPU file")
    for span in ("1h", "24h", "7d", "30d")
    for scope in ("one GPU", "all GPUs")
]
ROWS = [
    "generator, 8-GPU file",
    "generator, 64-GPU file",
    *HISTORY_ROWS,
    "ingest, publisher -> writer -> committed rows",
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
    "bytes written per hourly purge, 8-GPU file",
    "bytes written per hourly purge, 64-GPU file",
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
