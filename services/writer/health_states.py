"""Store a GPU's health counters and states each time they change (the `health_states` table).

- One row per GPU per tick whose health differs from the GPU's previous row: a steady GPU adds
  nothing, however long it runs; a range's new ECC errors, remaps or violation time are the
  increases between rows (services/web/event_reads.py).
- What moves on its own while a GPU works normally adds a row at most every COUNTER_ROW_S: the
  violation times (power-capped under full load is how a busy GPU runs), corrected ECC errors
  and PCIe replays (a few an hour), the link generation (an idle GPU lowers it to save power)
  and the clock-event bits that are not a finding (idle, SW power cap, ...). Anything else
  adds one at once: a finding's start or end, the limiting reasons (so a thermal episode's
  violation time is exact), uncorrected errors, remaps, the link width, the NVLink links.
- The previous row is read from the file (one key look-up per GPU per batch), in the batch's
  transaction: nothing is held in memory. A tick older than it (a replay after an outage, which
  can come after the live ticks) is judged against the row that held at its own time, and adds
  a row where it changed something at once; the same tick again adds nothing.
"""

from __future__ import annotations

import operator
import sqlite3
from collections.abc import Mapping

from common.health import LIMITING_REASONS_MASK, finding_bits, findings, is_busy
from common.messages import GpuReading, Tick
from common.schema import HEALTH_STATE_COLUMNS

COUNTER_ROW_S = 600.0

_COLUMNS = ", ".join(HEALTH_STATE_COLUMNS)
_SLOW_COLUMNS = (
    "clocks_event_reasons",  # its limiting bits are compared at once, below
    "power_violation_ns",
    "thermal_violation_ns",
    "ecc_corrected_volatile",
    "ecc_corrected_aggregate",
    "pcie_replays",
    "pcie_link_gen",
)
_FAST_VALUES = operator.itemgetter(
    *(index for index, name in enumerate(HEALTH_STATE_COLUMNS) if name not in _SLOW_COLUMNS)
)
_COUNTER_NAMES = HEALTH_STATE_COLUMNS[1:10]  # clocks_event_reasons .. remapped_rows_uncorrectable
# clocks_event_reasons .. pcie_link_width: the state's columns after findings, in one look-up
_TO_LINK_WIDTH_NAMES = (
    *_COUNTER_NAMES,
    "remap_pending",
    "remap_failure",
    "retired_pages_sbe",
    "retired_pages_dbe",
    "retired_pages_pending",
    "pcie_link_gen",
    "pcie_link_width",
)
_TO_LINK_WIDTH = operator.attrgetter(*_TO_LINK_WIDTH_NAMES)
_LIMIT_VALUES = operator.attrgetter("pcie_max_gen", "pcie_max_width", "nvlink_links")
_NO_LIMITS = (None, None, None)
# The order state_of() builds its tuple in; importing fails if the schema's columns change.
_STATE_ORDER = (
    "findings",
    *_TO_LINK_WIDTH_NAMES,
    "pcie_max_gen",
    "pcie_max_width",
    "pcie_replays",
    "nvlink_links",
    "nvlink_links_active",
)
if _STATE_ORDER != HEALTH_STATE_COLUMNS:
    raise ImportError("services.writer.health_states: state_of() no longer matches the schema")
_REASONS = HEALTH_STATE_COLUMNS.index("clocks_event_reasons")
_INSERT = (
    f"INSERT OR IGNORE INTO health_states (gpu_id, ts, {_COLUMNS})"
    f" VALUES (?, ?, {', '.join('?' for _ in HEALTH_STATE_COLUMNS)})"
)
_AT_OR_BEFORE = (
    f"SELECT ts, {_COLUMNS} FROM health_states WHERE gpu_id = ? AND ts <= ?"
    " ORDER BY ts DESC LIMIT 1"
)
_LAST = f"SELECT ts, {_COLUMNS} FROM health_states WHERE gpu_id = ? ORDER BY ts DESC LIMIT 1"

State = tuple[int | None, ...]


def state_of(
    reading: GpuReading, found: dict[tuple[State, bool], int] | None = None
) -> State | None:
    """Return the reading's health as a row of HEALTH_STATE_COLUMNS, None when it has none.

    found: the findings' bits already worked out for a state's other columns and the GPU's
    busy flag, filled as it goes (the caller's, for one batch). The findings read only health
    and limit values that the state holds, plus busy, so that equal keys have equal bits; it
    spares the findings' texts of every reading of a steady GPU.
    """
    health, limits = reading.health, reading.limits
    if reading.error is not None or health is None:
        return None
    # HEALTH_STATE_COLUMNS's order, spelled out: one tuple per reading, no loop over names
    # (the writer does this for every reading of every tick; _STATE_ORDER checks the order).
    limit_values = _NO_LIMITS if limits is None else _LIMIT_VALUES(limits)
    # The yes-or-no columns stay bools: SQLite stores True as 1, and True == 1 where rows are
    # compared, so a bool and its stored int are the same state.
    rest = (
        *_TO_LINK_WIDTH(health),
        limit_values[0],
        limit_values[1],
        health.pcie_replays,
        limit_values[2],
        health.nvlink_links_active,
    )
    busy = is_busy(reading.util_gpu_pct)
    bits = None if found is None else found.get((rest, busy))
    if bits is None:
        bits = finding_bits(findings(health, limits, busy))
        if found is not None:
            found[(rest, busy)] = bits
    return (bits, *rest)


def store_health_states(
    conn: sqlite3.Connection, ticks: list[Tick], gpu_ids: Mapping[str, int]
) -> None:
    """Insert the rows the ticks' changes of health make, in the caller's transaction."""
    # per GPU: its newest row's time, state and the part of it stored at once (_at_once)
    last: dict[int, tuple[float, State, State] | None] = {}
    found: dict[tuple[State, bool], int] = {}
    for tick in ticks:
        ts = tick.ts
        for reading in tick.gpus:
            state = state_of(reading, found)
            if state is None:
                continue
            gpu_id = gpu_ids[reading.uuid]
            if gpu_id not in last:
                row = conn.execute(_LAST, (gpu_id,)).fetchone()
                if row is None:
                    last[gpu_id] = None
                else:
                    stored = tuple(row[1:])
                    last[gpu_id] = (row[0], stored, _at_once(stored))
            held = last[gpu_id]
            if held is None:
                conn.execute(_INSERT, (gpu_id, ts, *state))
                last[gpu_id] = (ts, state, _at_once(state))
            elif ts < held[0]:
                # older than the newest row: a replay after an outage, which may come after the
                # live ticks. Judged against the row that held at its own time.
                if _changes_history(conn, gpu_id, ts, state):
                    conn.execute(_INSERT, (gpu_id, ts, *state))
            elif ts > held[0] and state != held[1]:
                # a change stored at once, or a slow counter's after COUNTER_ROW_S
                at_once = _at_once(state)
                if at_once != held[2] or ts - held[0] >= COUNTER_ROW_S:
                    conn.execute(_INSERT, (gpu_id, ts, *state))
                    last[gpu_id] = (ts, state, at_once)


def _changes_history(conn: sqlite3.Connection, gpu_id: int, ts: float, state: State) -> bool:
    """Return whether a state at ts differs from the GPU's row at or before ts (none: it does)."""
    row = conn.execute(_AT_OR_BEFORE, (gpu_id, ts)).fetchone()
    if row is None:
        return True
    return row[0] < ts and _at_once(tuple(row[1:])) != _at_once(state)


def _at_once(state: State) -> State:
    """Return the part of a state whose change is stored at once."""
    reasons = state[_REASONS]
    return (*_FAST_VALUES(state), None if reasons is None else reasons & LIMITING_REASONS_MASK)
