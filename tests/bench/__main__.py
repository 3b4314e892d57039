"""Run the benchmark suite and print its one table of figures against baselines.

    python -m tests.bench                      # everything; several minutes, files cached
    python -m tests.bench --smoke              # tiny sizes, under a minute (CI runs this)
    python -m tests.bench --markdown bench.md  # also write the table as Markdown

Every figure is measured with its baseline in the same run. The exit status: 1 when a figure
could not be measured; in the full run, 3 when every figure was measured but a target was missed;
0 otherwise. Smoke mode's sizes are too small to judge a target: it fails on crashes only.
"""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from tests.bench import (
    cost,
    databases,
    energy,
    fleet_render,
    footprint,
    history,
    ingest,
    lighthouse,
    live,
    maintenance,
    soak,
)
from tests.bench.settings import DEFAULT_CACHE, FULL, SMOKE, Sizes
from tests.bench.table import (
    FAILED_VALUE,
    Report,
    failed_row,
    machine,
    render_markdown,
    render_text,
)

log = logging.getLogger("tests.bench")

SECTIONS = (
    "generator",
    "history",
    "energy",
    "ingest",
    "live",
    "cost",
    "footprint",
    "maintenance",
    "lighthouse",
    "soak",
    "fleet",
)
NEEDS_FILES = frozenset({"generator", "history", "energy", "footprint", "maintenance"})
TIME_LIMIT_S = {True: 300, False: 3 * 3600}  # smoke, full: the whole run, then it stops
FAILED_STATUS = 1  # a figure could not be measured (or the run went past its time limit)
MISSED_STATUS = 3  # full run: every figure measured, at least one target missed


class SuiteTimeoutError(BaseException):
    """The whole run went past its time limit (a BaseException: no section may swallow it)."""


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """Return the command line's options."""
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench", description=__doc__.splitlines()[0]
    )
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, under a minute")
    parser.add_argument("--markdown", type=Path, help="also write the table as Markdown here")
    parser.add_argument(
        "--cache",
        type=Path,
        default=DEFAULT_CACHE,
        help=f"generated files (default {DEFAULT_CACHE})",
    )
    parser.add_argument("--regenerate", action="store_true", help="generate the files again")
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections of {', '.join(SECTIONS)}",
    )
    args = parser.parse_args(argv)
    args.sections = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}")
    return args


def run_sections(args: argparse.Namespace, sizes: Sizes, work: Path, report: Report) -> int:
    """Run the chosen sections in order; return how many failed."""
    failures = 0
    files: list[databases.Generated] = []
    if NEEDS_FILES & set(args.sections):
        try:
            files = [
                databases.ensure(args.cache, spec, args.regenerate)
                for spec in (sizes.small, sizes.large)
            ]
        except Exception as error:
            traceback.print_exc()
            report.add(failed_row("generator", error))
            return 1
    steps: dict[str, Callable[[], None]] = {
        "generator": lambda: [
            report.add(row) for row in databases.generator_rows(sizes, files, work)
        ],
        "history": lambda: history.run(sizes, files, work, report),
        "energy": lambda: energy.run(sizes, files, work, report),
        "ingest": lambda: ingest.run(sizes, work, report),
        "live": lambda: live.run(sizes, work, report),
        "cost": lambda: cost.run(sizes, work, report),
        "footprint": lambda: footprint.run(sizes, files, work, report),
        "maintenance": lambda: maintenance.run(sizes, files, work, report),
        "lighthouse": lambda: lighthouse.run(sizes, work, report, args.cache),
        "soak": lambda: soak.run(sizes.smoke, work, report),
        "fleet": lambda: fleet_render.run(sizes, work, report),
    }
    for name in args.sections:
        started = time.monotonic()
        log.info("== %s", name)
        try:
            steps[name]()
        except Exception as error:
            traceback.print_exc()
            report.add(failed_row(name, error))
            failures += 1
        log.info("== %s took %.0f s", name, time.monotonic() - started)
    return failures


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    if signum == signal.SIGALRM:
        raise SuiteTimeoutError("the benchmark ran past its time limit")
    raise SystemExit(128 + signum)  # unwinds every `with`, which stops the child processes


def main(argv: list[str] | None = None) -> int:
    """Run the suite; print the table; return the exit status."""
    args = parse_args(argv)
    sizes = SMOKE if args.smoke else FULL
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    # the slow generator reads simulated GPUs whose fan is "not supported": expected, not news
    logging.getLogger("services").setLevel(logging.ERROR)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 websockets, in children too
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGALRM, _on_signal)
    signal.alarm(TIME_LIMIT_S[sizes.smoke])
    report = Report([], [])
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="pcw-bench-") as folder:
        try:
            failures = run_sections(args, sizes, Path(folder), report)
        except SuiteTimeoutError as error:
            report.add(failed_row("the run", error))
            failures = 1
        finally:
            signal.alarm(0)
    mode = "smoke" if sizes.smoke else "full"
    elapsed_s = time.monotonic() - started
    header = [
        f"pyCudaWatch benchmark ({mode}, {elapsed_s:.0f} s) on {machine()}",
        f"files: {sizes.small.name} = {sizes.small.describe()}; "
        f"{sizes.large.name} = {sizes.large.describe()}",
    ]
    sys.stdout.write("\n".join(header) + "\n\n" + render_text(report.rows) + "\n")
    sys.stdout.write("".join(f"- {note}\n" for note in report.notes))
    sys.stdout.flush()
    if args.markdown is not None:
        args.markdown.write_text(
            render_markdown(report.rows, [header[1], *report.notes], mode, elapsed_s=elapsed_s)
        )
    return exit_status(failures, report, smoke=sizes.smoke)


def exit_status(failures: int, report: Report, *, smoke: bool) -> int:
    """Return the run's exit status: failures first, then (full run only) missed targets."""
    unmeasured = [row for row in report.rows if row.value.startswith(FAILED_VALUE)]
    if failures or unmeasured:
        return FAILED_STATUS
    missed = [row.figure for row in report.rows if row.met is False]
    if smoke or not missed:
        return 0
    log.error("%d target(s) missed: %s", len(missed), "; ".join(missed))
    return MISSED_STATUS


if __name__ == "__main__":
    sys.exit(main())
