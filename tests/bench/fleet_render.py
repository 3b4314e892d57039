"""Fleet view: 256 simulated GPUs on 32 hosts in a real Chromium, against the cards view.

    python -m tests.bench --only fleet           # or: python -m tests.bench.fleet_render [--smoke]

The fleet (tests.bench.fleet_stack: an hour of history through the writer's own storage code,
one real web process, every host's ticks from one ZeroMQ publisher) is opened in Debian's
Chromium (as the browser tests do) in each view, the fleet view and, as the baseline, the cards
view of the same fleet:

- navigation -> last row drawn: each navigation in a fresh browser context (nothing cached), a
  script added before the page's own watches every animation frame until the page holds a row
  (fleet) or a card (cards) for every GPU, and takes the next frame's time: the frame after the
  one that drew the last row, in the page's own clock from the navigation's start (median);
  with, beside it, the main thread's CPU time until then (CDP Performance.getMetrics ThreadTime
  of the page's new renderer), which a machine busy with other work inflates far less;
- main-thread time per live tick: with the page loaded and live, one host's tick at a time is
  published; Chromium's own count of the page's main-thread CPU time (ThreadTime) is read before
  and after each tick, less the same count over as long a quiet window (the page's timers):
  median and worst tick. Wall-clock task time (TaskDuration, what DevTools' performance panel
  sums) is given as a note, with the load average: on a shared 2-core machine a task's wall time
  counts the time other processes held the CPU. So does the page's own performance.measure of
  each fleet render.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, CDPSession, Page, sync_playwright

from tests.bench.fleet_stack import Fleet, running_fleet
from tests.bench.settings import FULL, SMOKE, Sizes
from tests.bench.table import Report, Row, ms, render_text, times
from tests.browser.test_dashboard import CHROMIUM, CHROMIUM_ARGS

log = logging.getLogger(__name__)

RENDER_LIMIT_S = 1.0
TICK_LIMIT_S = 0.050
VIEWPORT = {"width": 1400, "height": 1000}
TICK_GAP_S = 0.3  # between two hosts' ticks: each one's work is over before the next
LOAD_TIMEOUT_MS = 120_000  # 256 cards on a busy 2-core machine
# Before any script of the page: the frame after the one in which every row (card) is there.
DRAWN_SCRIPT = """
(() => {
  const check = () => {
    if (document.querySelectorAll(%r).length >= %d) {
      requestAnimationFrame(() => { window.__pcwDrawnMs = performance.now(); });
    } else {
      requestAnimationFrame(check);
    }
  };
  requestAnimationFrame(check);
})();
"""
SELECTORS = {"fleet": "tr.fleet-gpu", "cards": ".gpu-card"}


@dataclass(frozen=True)
class Shape:
    """The fleet and how often each thing is measured."""

    hosts: int
    gpus_per_host: int
    navigations: int
    ticks: int
    settle_s: float  # after a page is loaded and live, before its ticks are timed
    warm_up: bool  # open each view once before timing (the server's first answers are slow)


FULL_SHAPE = Shape(hosts=32, gpus_per_host=8, navigations=5, ticks=24, settle_s=2.0, warm_up=True)
SMOKE_SHAPE = Shape(hosts=2, gpus_per_host=3, navigations=1, ticks=2, settle_s=0.2, warm_up=False)


@dataclass(frozen=True)
class ViewFigures:
    """What one view measured: seconds."""

    drawn_s: list[float]
    drawn_cpu_s: list[float]
    tick_s: list[float]  # main-thread CPU time
    tick_wall_s: list[float]  # main-thread task time, wall clock
    render_measures_s: list[float]


def run(sizes: Sizes, work: Path, report: Report) -> None:
    """Measure the fleet view and the cards view of one fleet; add their rows to report."""
    shape = SMOKE_SHAPE if sizes.smoke else FULL_SHAPE
    gpus = shape.hosts * shape.gpus_per_host
    history_s = 600.0 if sizes.smoke else 3600.0
    with (
        running_fleet(work, shape.hosts, shape.gpus_per_host, history_s=history_s) as fleet,
        sync_playwright() as pw,
    ):
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            if shape.warm_up:
                warm_up(browser, fleet)
            figures = {view: measure(browser, fleet, view, shape) for view in ("fleet", "cards")}
        finally:
            browser.close()
    label = f"{gpus} GPUs on {shape.hosts} hosts"
    fleet_fig, cards_fig = figures["fleet"], figures["cards"]
    drawn, drawn_base = statistics.median(fleet_fig.drawn_s), statistics.median(cards_fig.drawn_s)
    report.add(
        Row(
            f"fleet view, {label}: navigation -> last row drawn, median",
            ms(drawn),
            f"{ms(drawn_base)} cards view, last card",
            times(drawn / drawn_base),
            f"<= {ms(RENDER_LIMIT_S)}",
            drawn <= RENDER_LIMIT_S,
        )
    )
    cpu, cpu_base = (
        statistics.median(fleet_fig.drawn_cpu_s),
        statistics.median(cards_fig.drawn_cpu_s),
    )
    report.add(
        Row(
            f"fleet view, {label}: main-thread CPU until the last row drawn, median",
            ms(cpu),
            f"{ms(cpu_base)} cards view, last card",
            times(cpu / cpu_base),
        )
    )
    for stat, statistic in (("median", statistics.median), ("worst", max)):
        value, baseline = statistic(fleet_fig.tick_s), statistic(cards_fig.tick_s)
        report.add(
            Row(
                f"fleet view, {label}: main-thread CPU per live tick of a host, {stat}",
                ms(value),
                f"{ms(baseline)} cards view",
                times(value / baseline) if baseline > 0 else "-",
                f"<= {ms(TICK_LIMIT_S)}",
                value <= TICK_LIMIT_S,
            )
        )
    measures = fleet_fig.render_measures_s
    wall, wall_base = (
        statistics.median(fleet_fig.tick_wall_s),
        statistics.median(cards_fig.tick_wall_s),
    )
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    report.note(
        f"fleet view: {shape.navigations} navigation(s) per view in fresh contexts, "
        f"{len(fleet_fig.tick_s)} ticks of {shape.gpus_per_host} GPUs each {TICK_GAP_S:g} s "
        f"apart; main-thread wall task time per tick, median: fleet {ms(wall)}, cards "
        f"{ms(wall_base)}; the page's own fleet renders (performance.measure) took median "
        f"{ms(statistics.median(measures)) if measures else '-'}, "
        f"longest {ms(max(measures)) if measures else '-'}; load average {load} "
        f"on {os.cpu_count()} CPUs"
    )


def warm_up(browser: Browser, fleet: Fleet) -> None:
    """Open each view once, so that the server's first answers (caches, imports) count nowhere."""
    fleet.tick_all()
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    for view in ("fleet", "cards"):
        page.goto(f"{fleet.url}/?view={view}")
        page.wait_for_selector(
            f"{SELECTORS[view]} >> nth={fleet.gpus - 1}", timeout=LOAD_TIMEOUT_MS, state="attached"
        )
    context.close()


def measure(browser: Browser, fleet: Fleet, view: str, shape: Shape) -> ViewFigures:
    """Time the view's navigations to the last row, then its main-thread time per live tick."""
    drawn = []
    drawn_cpu = []
    for _ in range(shape.navigations):
        fleet.tick_all()  # no host goes stale between navigations
        context = browser.new_context(viewport=VIEWPORT)
        page = context.new_page()
        page.add_init_script(DRAWN_SCRIPT % (SELECTORS[view], fleet.gpus))
        cdp = context.new_cdp_session(page)
        cdp.send("Performance.enable")
        cpu_before = metric(cdp, "ThreadTime")
        page.goto(f"{fleet.url}/?view={view}")
        page.wait_for_function("() => window.__pcwDrawnMs !== undefined", timeout=LOAD_TIMEOUT_MS)
        drawn.append(page.evaluate("window.__pcwDrawnMs") / 1000)
        drawn_cpu.append(metric(cdp, "ThreadTime") - cpu_before)
        context.close()
    log.info("fleet: %s view drawn in %s", view, ", ".join(ms(value) for value in drawn))
    context = browser.new_context(viewport=VIEWPORT)
    page = context.new_page()
    fleet.tick_all()
    page.goto(f"{fleet.url}/?view={view}")
    page.wait_for_selector(
        f"{SELECTORS[view]} >> nth={fleet.gpus - 1}", timeout=LOAD_TIMEOUT_MS, state="attached"
    )
    page.wait_for_selector("#conn-badge[data-state='live']")
    if view == "fleet":
        page.wait_for_selector("#fleet-heatmap[data-buckets]", state="attached")
    else:
        page.wait_for_function(
            "() => window.Chart && Chart.getChart('chart-util')"
            " && Chart.getChart('chart-util').data.datasets.length > 0"
        )
    time.sleep(shape.settle_s)  # the history's answers and their drawing are over
    ticks, ticks_wall = tick_costs(page, fleet, shape.ticks)
    measures = page.evaluate(
        "performance.getEntriesByName('pcw-fleet-render').map((entry) => entry.duration)"
    )
    context.close()
    log.info("fleet: %s view, per tick %s", view, ", ".join(ms(value) for value in ticks))
    return ViewFigures(drawn, drawn_cpu, ticks, ticks_wall, [value / 1000 for value in measures])


def metric(cdp: CDPSession, name: str) -> float:
    """Return one of the page's CDP Performance metrics (seconds for the durations)."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return next(item["value"] for item in metrics if item["name"] == name)


def tick_costs(page: Page, fleet: Fleet, count: int) -> tuple[list[float], list[float]]:
    """Return the main thread's CPU time and wall task time of each of `count` host ticks, each
    less its share of a quiet window's."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("Performance.enable")

    def both() -> tuple[float, float]:
        return metric(cdp, "ThreadTime"), metric(cdp, "TaskDuration")

    quiet_cpu, quiet_wall = both()
    time.sleep(TICK_GAP_S * count)
    cpu_after, wall_after = both()
    idle_cpu, idle_wall = (cpu_after - quiet_cpu) / count, (wall_after - quiet_wall) / count
    cpu_costs, wall_costs = [], []
    for number in range(count):
        cpu_before, wall_before = both()
        fleet.send_host(number % fleet.hosts)
        time.sleep(TICK_GAP_S)
        cpu, wall = both()
        cpu_costs.append(max(0.0, cpu - cpu_before - idle_cpu))
        wall_costs.append(max(0.0, wall - wall_before - idle_wall))
    cdp.detach()
    return cpu_costs, wall_costs


def main(argv: list[str] | None = None) -> int:
    """Run this section alone and print its rows."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="a small fleet, once")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="bench: %(message)s", stream=sys.stderr)
    logging.getLogger("services").setLevel(logging.ERROR)
    report = Report([], [])
    with tempfile.TemporaryDirectory(prefix="pcw-fleet-") as folder:
        run(SMOKE if args.smoke else FULL, Path(folder), report)
    print(render_text(report.rows))
    for note in report.notes:
        print(note)
    return 0


if __name__ == "__main__":
    sys.exit(main())
