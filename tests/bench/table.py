"""The suite's one table (figure | value | baseline | ratio | target | met?), as text or Markdown.

Also the statistics the sections share, and the machine the run was on.
"""

from __future__ import annotations

import datetime
import math
import os
import platform
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

FAILED_VALUE = "FAILED"  # the value of a figure that could not be measured
COLUMNS = ("figure", "value", "baseline", "ratio", "target", "met?")


@dataclass(frozen=True)
class Row:
    """One figure, its baseline measured in the same run, and the target it is held to.

    met is None for a figure without a target (shown for context).
    """

    figure: str
    value: str
    baseline: str
    ratio: str
    target: str = "-"
    met: bool | None = None

    def cells(self) -> tuple[str, ...]:
        """Return the row's cells in COLUMNS order."""
        met = "-" if self.met is None else ("yes" if self.met else "NO")
        return (self.figure, self.value, self.baseline, self.ratio, self.target, met)


def failed_row(figure: str, error: BaseException) -> Row:
    """Return the row of a figure that could not be measured."""
    text = f"{type(error).__name__}: {error}".splitlines()[0][:120]
    return Row(figure, f"{FAILED_VALUE} ({text})", "-", "-", "-", False)


def median(values: Sequence[float]) -> float:
    """Return the median of a non-empty sequence."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def p99(values: Sequence[float]) -> float:
    """Return the 99th percentile by nearest rank (the maximum below 100 values)."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def ms(seconds: float) -> str:
    """Format seconds as milliseconds with three significant figures."""
    value = seconds * 1000
    return f"{value:.3g} ms" if value < 1000 else f"{value:,.0f} ms"


def mb(size_bytes: float) -> str:
    """Format bytes as megabytes (10^6)."""
    return f"{size_bytes / 1e6:.1f} MB"


def times(ratio: float) -> str:
    """Format a ratio as a multiplier."""
    if not math.isfinite(ratio):
        return "-"
    return f"{ratio:.2f}x" if ratio < 10 else f"{ratio:,.0f}x"


def render_text(rows: Sequence[Row]) -> str:
    """Return the table as aligned plain text."""
    table = [COLUMNS, *(row.cells() for row in rows)]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    lines = [
        " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in table
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    return "\n".join(line.rstrip() for line in lines) + "\n"


def render_markdown(
    rows: Sequence[Row], notes: Sequence[str], mode: str = "full", *, elapsed_s: float
) -> str:
    """Return the table as Markdown, headed by the date, run time and machine, then notes."""

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    out = [
        f"Measured {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC "
        f"({mode} run, {elapsed_s:.0f} s) on {machine()}.",
        "",
        line(COLUMNS),
        line(["---"] * len(COLUMNS)),
        *(line(row.cells()) for row in rows),
    ]
    if notes:
        out += ["", *(f"- {note}" for note in notes)]
    return "\n".join(out) + "\n"


def machine() -> str:
    """Return the CPUs, CPU model, and Python, SQLite and library versions, in one line."""
    model = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for text in cpuinfo.read_text(errors="replace").splitlines():
            if text.startswith("model name"):
                model = text.split(":", 1)[1].strip()
                break
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    libraries = ", ".join(
        f"{name} {_version(name)}" for name in ("pyzmq", "aiohttp", "msgspec", "supervisor")
    )
    return (
        f"{cpus} CPUs (nproc), {model}, Python {platform.python_version()}, "
        f"SQLite {sqlite3.sqlite_version}, {libraries}"
    )


def _version(distribution: str) -> str:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "?"


@dataclass
class Report:
    """What the sections found: the rows of the table, and notes printed under it."""

    rows: list[Row]
    notes: list[str]

    def add(self, row: Row) -> None:
        """Append a row."""
        self.rows.append(row)

    def note(self, text: str) -> None:
        """Append a note."""
        self.notes.append(text)
