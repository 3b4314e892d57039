"""Google Lighthouse on the dashboard: performance, accessibility, layout shift, longest task.

Pages: the live page of a 4-GPU simulated stack (sampler, writer and web, 1 s ticks), and the
30-day range of a generated 32-GPU file (4 hosts x 8 GPUs, a web process alone over it). Each
page is audited on Lighthouse's desktop and mobile profiles (simulated throttling: mobile is a
4x slower CPU on a slow 4G link), RUNS times; the figures are medians.

The baseline is the same page of BASELINE_REV, the dashboard before issue 17's work on assets
and layout, run from a git worktree of that commit in the same run, so both meet the same busy
machine. Lighthouse is the npm package pinned in tests/bench/lighthouse/package.json (12.2.3:
13 needs Node 22, and npm ci refuses newer 12.x locks here), installed there by `npm ci` when
missing, and drives Debian's chromium (CHROME_PATH) headless.

Smoke mode only checks that the pinned Lighthouse and the chromium start (an audit takes
half a minute here).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from tests.bench import databases
from tests.bench.procs import REPO, free_port, http_status, log_tail, stop, wait_until
from tests.bench.settings import FileSpec, Sizes
from tests.bench.table import Report, Row, median
from tests.stack import stack_env

log = logging.getLogger(__name__)

PACKAGE_DIR = Path(__file__).resolve().parent / "lighthouse"
LIGHTHOUSE = PACKAGE_DIR / "node_modules" / ".bin" / "lighthouse"
BASELINE_REV = "c340309"  # the page before issue 17's no-jump and asset work
RUNS = {True: 1, False: 5}  # smoke, full
RUN_TIMEOUT_S = 180.0
LIVE_GPUS = 4
LONG_FILE = FileSpec("32-GPU file", 30, 8, 4, 60)
LONG_TASK_MS = 50.0
# (page, form factor): the performance score each must reach; accessibility 100 and CLS < 0.05
# everywhere.
PERFORMANCE_TARGETS = {
    ("live", "desktop"): 95,
    ("live", "mobile"): 90,
    ("30-day", "mobile"): 85,
}
CLS_LIMIT = 0.05


@dataclass(frozen=True)
class Audit:
    """What one Lighthouse run found: scores 0-100, CLS, total blocking time, longest task."""

    performance: float
    accessibility: float
    cls: float
    tbt_ms: float
    longest_task_ms: float
    dom_elements: float


def run(sizes: Sizes, work: Path, report: Report, cache: Path) -> None:
    """Audit each page and form factor on this tree and on the baseline's (smoke: starts only)."""
    install()
    if sizes.smoke:
        version = subprocess.run(
            [str(LIGHTHOUSE), "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        chrome = subprocess.run(
            [chrome_path(), "--version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout.strip()
        report.add(Row("lighthouse starts (smoke: no audit)", version, "-", "-"))
        report.note(f"lighthouse {version} drives {chrome}")
        return
    runs = RUNS[sizes.smoke]
    cases = [(page, form) for page in ("live", "30-day") for form in ("desktop", "mobile")]
    long_file = databases.ensure(cache, LONG_FILE).path
    found: dict[tuple[str, str, str], list[Audit]] = {}
    with worktree(BASELINE_REV, work) as before:
        for page in ("live", "30-day"):
            # the two trees one after the other on each page, so that both meet the same load
            for tree_name, tree in (("before", before), ("now", REPO)):
                with serving(page, tree, work, long_file) as url:
                    for form in [form for p, form in cases if p == page]:
                        audits = [audit(url, form, work) for _ in range(runs)]
                        log.info("%s, %s page, %s: %s", tree_name, page, form, audits)
                        found[(tree_name, page, form)] = audits
    for page, form in cases:
        now, before = found[("now", page, form)], found[("before", page, form)]
        add_rows(report, page, form, now, before, runs)
    report.note(
        f"lighthouse: baseline = the page at {BASELINE_REV} (before issue 17), same run; "
        "scores depend on this machine's CPU (simulated throttling): compare within a run"
    )


def add_rows(
    report: Report,
    page: str,
    form: str,
    now: list[Audit],
    before: list[Audit] | None,
    runs: int,
) -> None:
    """Add the page's rows: medians now against the baseline's medians."""
    label = f"lighthouse {page} page, {form}, median of {runs}"
    goal = PERFORMANCE_TARGETS.get((page, form))
    live_mobile = (page, form) == ("live", "mobile")
    # (Audit field, row name, value format, target text, whether a value meets it; None: none)
    figures: list[tuple[str, str, str, str, Callable[[float], bool] | None]] = [
        ("performance", "performance", "{:.0f}", "-" if goal is None else f">= {goal}",
         None if goal is None else lambda value: value >= goal),
        ("accessibility", "accessibility", "{:.0f}", "100", lambda value: value >= 100),
        ("cls", "layout shift (CLS)", "{:.3f}", f"< {CLS_LIMIT}",
         lambda value: value < CLS_LIMIT),
        ("tbt_ms", "total blocking time", "{:.0f} ms", "-", None),
        ("dom_elements", "DOM elements", "{:.0f}", "-", None),
        ("longest_task_ms", "longest main-thread task", "{:.0f} ms",
         f"<= {LONG_TASK_MS:.0f} ms" if live_mobile else "-",
         (lambda value: value <= LONG_TASK_MS) if live_mobile else None),
    ]  # fmt: skip
    for field, name, shown, target, meets in figures:
        value = median([getattr(item, field) for item in now])
        base = median([getattr(item, field) for item in before]) if before else None
        report.add(
            Row(
                f"{label}: {name}",
                shown.format(value),
                "-" if base is None else shown.format(base),
                f"{value / base:.2f}x" if base else "-",
                target,
                None if meets is None else meets(value),
            )
        )


def install() -> None:
    """Install the pinned Lighthouse with `npm ci` unless it is there already."""
    if LIGHTHOUSE.exists():
        return
    log.info("installing Lighthouse: npm ci in %s", PACKAGE_DIR)
    subprocess.run(
        ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
        cwd=PACKAGE_DIR,
        check=True,
        timeout=600,
    )


def chrome_path() -> str:
    """Return Debian's chromium, which Lighthouse drives (it downloads no browser of its own)."""
    path = shutil.which("chromium")
    if path is None:
        raise RuntimeError("no chromium on PATH (apt-get install chromium)")
    return path


def audit(url: str, form: str, work: Path) -> Audit:
    """Run Lighthouse on url with a form factor's defaults; return what it found.

    One run in a few dozen here ends in "Chrome prevented page load with an interstitial"
    while the server answers: that run is retried once.
    """
    try:
        return audit_once(url, form, work)
    except RuntimeError as error:
        log.warning("lighthouse failed, once more: %s", error)
        return audit_once(url, form, work)


def audit_once(url: str, form: str, work: Path) -> Audit:
    """Run Lighthouse once on url with a form factor's defaults; return what it found."""
    with tempfile.TemporaryDirectory(prefix="lh-", dir=work) as folder:
        out = Path(folder) / "report.json"
        command = [
            str(LIGHTHOUSE),
            url,
            "--quiet",
            "--output=json",
            f"--output-path={out}",
            "--only-categories=performance,accessibility",
            # a free port may be one chromium refuses (ERR_UNSAFE_PORT) unless allowed
            "--chrome-flags=--headless=new --no-sandbox --disable-gpu"
            f" --explicitly-allowed-ports={urlsplit(url).port}",
            f"--chrome-path={chrome_path()}",
        ]
        if form == "desktop":
            command.append("--preset=desktop")
        env = {**os.environ, "CHROME_PATH": chrome_path(), "TMPDIR": folder}
        done = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False
        )
        if done.returncode != 0 or not out.exists():
            raise RuntimeError(f"lighthouse exited {done.returncode}: {done.stderr[-800:]}")
        return parse(json.loads(out.read_text()))


def parse(result: dict) -> Audit:
    """Return the figures of one Lighthouse JSON result."""
    if result.get("runtimeError"):
        raise RuntimeError(f"lighthouse: {result['runtimeError']}")
    categories, audits = result["categories"], result["audits"]
    tasks = ((audits.get("long-tasks") or {}).get("details") or {}).get("items") or []
    return Audit(
        performance=100 * (categories["performance"]["score"] or 0),
        accessibility=100 * (categories["accessibility"]["score"] or 0),
        cls=float(audits["cumulative-layout-shift"]["numericValue"]),
        tbt_ms=float(audits["total-blocking-time"]["numericValue"]),
        longest_task_ms=max((float(task["duration"]) for task in tasks), default=0.0),
        dom_elements=float(audits["dom-size"].get("numericValue") or 0),
    )


@contextmanager
def worktree(rev: str, work: Path) -> Iterator[Path]:
    """Check rev out in a detached git worktree under work; remove it afterwards."""
    path = work / f"tree-{rev}"
    subprocess.run(
        ["git", "worktree", "add", "--detach", "--force", str(path), rev],
        cwd=REPO,
        check=True,
        capture_output=True,
        timeout=120,
    )
    try:
        yield path
    finally:
        subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)],
            cwd=REPO,
            check=False,
            capture_output=True,
            timeout=120,
        )


@contextmanager
def serving(page: str, tree: Path, work: Path, long_file: Path | None) -> Iterator[str]:
    """Serve a page from tree's code until the block ends; yield its URL once it has data."""
    folder = Path(tempfile.mkdtemp(prefix=f"lh-{page}-", dir=work))
    env = stack_env(folder, {"PCW_SIM_GPUS": str(LIVE_GPUS), "PCW_LOG_LEVEL": "WARNING"})
    programs = ("sampler", "writer", "web")
    query = ""
    if page == "30-day":
        if long_file is None:
            raise RuntimeError("the 30-day page needs the generated file")
        db_path = folder / "db" / "gpu_stats.db"
        db_path.parent.mkdir(parents=True)
        shutil.copyfile(long_file, db_path)
        env.update(PCW_DB_PATH=str(db_path), PCW_SUBSCRIBE=f"tcp://127.0.0.1:{free_port()}")
        programs = ("web",)
        query = "?range=30d"
    url = f"http://127.0.0.1:{env['PCW_WEB_PORT']}"
    log_path = folder / "stack.log"
    with log_path.open("ab") as log_file, ExitStack() as stack:
        for name in programs:
            process = subprocess.Popen(
                [sys.executable, "-m", f"services.{name}"],
                cwd=tree,  # `-m` imports the services of this tree first
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
            )
            stack.callback(stop, process)
        try:
            wait_until(lambda: http_status(url + "/healthz") is not None, 60, f"the {page} page")
            if page == "live":
                time.sleep(3.0)  # a few ticks stored, so that the charts have points
        except Exception:
            log.error("the %s page did not start:\n%s", page, log_tail(log_path))
            raise
        yield url + "/" + query
