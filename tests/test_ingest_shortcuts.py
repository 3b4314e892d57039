"""The writer's shortcuts for a steady tick give the same answers as the long way.

- Each GPU rule's `active` selector (one pass over a tick's readings, no Observation built)
  picks exactly the readings whose `check` answers active: the evaluator passes over the others
  where their GPU has no alert of the rule, so a selector that missed one would miss an alert.
- The health row of a reading, with the findings' bits taken from the batch's memo, is the
  row worked out alone.
- Judging a batch with the shortcuts ends in the same alerts, transitions and notifications as
  judging every rule on every reading.
- The finest rollups summed from a batch's own rows equal the aggregates of the rows stored.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.config import load_config
from common.messages import GpuHealth, GpuLimits, GpuProcess, GpuReading, Tick, XidEvent
from common.metrics import METRIC_NAMES
from common.schema import rollup_levels_for, rollup_table
from services.alerts.evaluator import Evaluator
from services.alerts.rule_file import parse_rules
from services.alerts.rules import gpu_rules
from services.writer.health_states import state_of
from services.writer.store import Store
from tests.conftest import numbered_tick
from tests.fuzzing import fuzz

_small = st.none() | st.integers(0, 5)
_flag = st.none() | st.booleans()
_count = st.none() | st.integers(0, 3)

healths = st.none() | st.builds(
    GpuHealth,
    clocks_event_reasons=st.none() | st.sampled_from([0, 1, 4, 8, 32, 64, 128, 0x28, 0x1FF]),
    power_violation_ns=_count,
    ecc_uncorrected_volatile=_count,
    ecc_corrected_volatile=_count,
    remapped_rows_uncorrectable=_count,
    remap_pending=_flag,
    remap_failure=_flag,
    retired_pages_pending=_flag,
    pcie_link_gen=_small,
    pcie_link_width=st.none() | st.sampled_from([0, 1, 4, 8, 16]),
    pcie_replays=_count,
    nvlink_links_active=_small,
)
limits = st.none() | st.builds(
    GpuLimits,
    temp_slowdown_c=st.none() | st.integers(80, 95),
    pcie_max_gen=_small,
    pcie_max_width=st.none() | st.sampled_from([0, 8, 16]),
    nvlink_links=_small,
)
processes = st.none() | st.lists(
    st.builds(
        GpuProcess,
        pid=st.integers(1, 9),
        used_mem_bytes=st.none() | st.sampled_from([0, 1 << 20]),
        name=st.none() | st.just("train.py"),
        user=st.none() | st.just("carol"),
    ),
    max_size=2,
)


_xid_events = st.builds(XidEvent, ts=st.just(1.0), code=st.just(79))


@st.composite
def readings(draw: st.DrawFn, index: int = 0) -> GpuReading:
    return GpuReading(
        index=index,
        uuid=f"GPU-{index}",
        name="NVIDIA A100",
        error=draw(st.none() | st.just("GPU is lost")) if draw(st.integers(0, 9)) == 0 else None,
        util_gpu_pct=draw(st.none() | st.sampled_from([0, 3, 5, 49, 50, 100])),
        mem_used_bytes=draw(st.none() | st.sampled_from([0, 1 << 20, 70 << 30])),
        mem_total_bytes=draw(st.none() | st.sampled_from([0, 80 << 30])),
        temp_c=draw(st.none() | st.integers(60, 96)),
        processes=draw(processes),
        health=draw(healths),
        limits=draw(limits),
        xid_events=draw(
            st.lists(st.builds(XidEvent, ts=st.just(1.0), code=st.just(79)), max_size=1)
        )
        if draw(st.integers(0, 19)) == 0
        else [],
    )


_USER_RULES = parse_rules(
    """
[[rule]]
name = "hot_memory"
metric = "temp_c"
op = ">="
threshold = 85
gpus = ["1", "2"]
""",
    "rules.toml",
)


def _config(**settings: str):
    return load_config({"PCW_DB_PATH": "/nonexistent/x.db", **settings})


@given(st.lists(readings(), min_size=1, max_size=6))
@fuzz(0.01)
def test_each_selector_picks_exactly_the_active_readings(found: list[GpuReading]) -> None:
    found = [dataclasses_replace_index(r, i) for i, r in enumerate(found)]
    for rule in gpu_rules(_config(PCW_ALERT_IDLE_FOR_S="3600"), _USER_RULES):
        expected = []
        for place, reading in enumerate(found):
            seen = rule.check("node-1", reading)
            if seen is not None and seen.active:
                expected.append(place)
        picked = [p for p in rule.active("node-1", found) if found[p].error is None]
        assert picked == [p for p in expected if found[p].error is None], rule.name


def dataclasses_replace_index(reading: GpuReading, index: int) -> GpuReading:
    """Return the reading as GPU `index` (its own UUID), so that user rules' GPU lists apply."""
    from msgspec.structs import replace

    return replace(reading, index=index, uuid=f"GPU-{index}")


@given(st.lists(readings(), min_size=1, max_size=30))
@fuzz(0.01)
def test_health_rows_with_the_memo_are_the_rows_alone(found: list[GpuReading]) -> None:
    memo: dict = {}
    for reading in found + found:  # the second pass is answered from the memo
        assert state_of(reading, memo) == state_of(reading)


@pytest.mark.parametrize(
    ("temp_for_s", "reversed_batches"),
    [("0", False), ("45", False), ("45", True)],  # 45 s: a hot GPU's alert waits a tick, held
)
@given(
    st.lists(st.lists(readings(), min_size=1, max_size=2), min_size=1, max_size=40),
    st.sets(st.integers(0, 39), max_size=3),
)
@fuzz(0.01)
def test_a_batch_judged_with_shortcuts_ends_as_judged_in_full(
    temp_for_s: str, reversed_batches: bool, rows: list, failed_ticks: set[int]
) -> None:
    """A tick of one GPU (its other one gone), a tick in error, XIDs, GPUs in error; alerts
    that fire at once or wait; a batch's ticks in sampler order or arriving newest first."""
    config = _config(
        PCW_ALERT_TEMP_FOR_S=temp_for_s, PCW_ALERT_IDLE_FOR_S="90", PCW_ALERT_REPEAT_S="60"
    )
    ticks = [
        Tick(
            host="node-1",
            sampler_id="run-1",
            seq=seq,
            ts=1000.0 + 30 * seq,  # a repeat is due after two ticks, an idle alert after three
            interval_s=30.0,
            error="NVML failed" if seq in failed_ticks else None,
            gpus=[dataclasses_replace_index(r, i) for i, r in enumerate(pair)],
        )
        for seq, pair in enumerate(rows)
    ]
    outcomes = []
    for full in (False, True):
        evaluator = Evaluator(config, _USER_RULES, clock=lambda: 2000.0)
        evaluator.shortcuts = not full
        evaluator.load([], {}, {})
        judged = []
        for first in range(0, len(ticks), 7):  # batches of 7 ticks, each committed
            batch = ticks[first : first + 7]
            position = {"run-1": ("node-1", batch[-1].seq)}
            outcome = evaluator.evaluate(batch[::-1] if reversed_batches else batch, position)
            judged.append(dataclasses.asdict(outcome))
            evaluator.committed()
        outcomes.append((judged, dict(evaluator.engine.states)))
    assert outcomes[0] == outcomes[1]


def _tick(seq: int, temp_c: int, power_w: float) -> Tick:
    def values(index: int) -> dict[str, Any]:
        return {
            "util_gpu_pct": seq % 100,
            "temp_c": temp_c + index,
            "power_w": power_w + index / 3,
            "fan_pct": None if seq % 3 else 40,  # a bucket of values and NULLs
            "mem_used_bytes": (seq * 7919) << 20,
        }

    ts = 1_790_000_000.0 + 10 * seq
    return numbered_tick("node-1", "run-1", seq, ts, 10.0, 2, "NVIDIA A100", values)


def test_rollups_summed_from_a_batch_equal_those_of_the_stored_rows(tmp_path):
    """Batches of new rows (summed in Python), then one that repeats stored ticks with other
    values (ignored by the file: summed back from it): every bucket of every level is the
    aggregate of the rows the file holds."""
    store = Store(tmp_path / "gpu_stats.db")
    store.write([_tick(seq, 50, 100.5) for seq in range(0, 137)])
    store.write([_tick(seq, 50, 100.5) for seq in range(137, 400)])
    store.write([_tick(seq, 90, 300.25) for seq in range(380, 500)])  # 380-399 are ignored
    store.close()
    conn = sqlite3.connect(tmp_path / "gpu_stats.db")
    columns = ", ".join(f"{m}_sum, {m}_n, {m}_max" for m in METRIC_NAMES)
    raw = ", ".join(f"sum({m}), count({m}), max({m})" for m in METRIC_NAMES)
    compared = 0
    for level_s in rollup_levels_for(10.0):
        stored = conn.execute(
            f"SELECT gpu_id, ts, n, {columns} FROM {rollup_table(level_s)} ORDER BY 1, 2"
        ).fetchall()
        expected = conn.execute(
            f"SELECT gpu_id, floor(ts / {level_s}) * {level_s} AS b, count(*), {raw}"
            " FROM samples GROUP BY 1, 2 ORDER BY 1, 2"
        ).fetchall()
        assert len(stored) == len(expected), level_s
        for mine, theirs in zip(stored, expected, strict=True):
            assert all(
                (a is None and b is None)
                or (a is not None and b is not None and math.isclose(a, b, rel_tol=1e-12))
                for a, b in zip(mine, theirs, strict=True)
            ), (level_s, mine[:3])
            compared += 1
    assert compared > 100
