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

import sqlite3
from collections.abc import Mapping

from common.health import LIMITING_REASONS_MASK, finding_bits, reading_findings
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
_SLOW = tuple(name in _SLOW_COLUMNS for name in HEALTH_STATE_COLUMNS)
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


def state_of(reading: GpuReading) -> State | None:
    """Return the reading's health as a row of HEALTH_STATE_COLUMNS, None when it has none."""
    health, limits = reading.health, reading.limits
    if reading.error is not None or health is None:
        return None
    found = reading_findings(reading)
    values = {
        "findings": finding_bits(found),
        "remap_pending": _flag(health.remap_pending),
        "remap_failure": _flag(health.remap_failure),
        "retired_pages_pending": _flag(health.retired_pages_pending),
        "pcie_max_gen": None if limits is None else limits.pcie_max_gen,
        "pcie_max_width": None if limits is None else limits.pcie_max_width,
        "nvlink_links": None if limits is None else limits.nvlink_links,
    }
    return tuple(
        values[name] if name in values else getattr(health, name) for name in HEALTH_STATE_COLUMNS
    )


def changed(previous: State, previous_ts: float, state: State, ts: float) -> bool:
    """Return whether a reading at ts with this state is stored after the row (previous_ts)."""
    if ts <= previous_ts:
        return False  # a replay, or older than what is stored
    if _at_once(previous) != _at_once(state):
        return True
    return previous != state and ts - previous_ts >= COUNTER_ROW_S


def store_health_states(
    conn: sqlite3.Connection, ticks: list[Tick], gpu_ids: Mapping[str, int]
) -> None:
    """Insert the rows the ticks' changes of health make, in the caller's transaction."""
    last: dict[int, tuple[float, State] | None] = {}
    for tick in ticks:
        for reading in tick.gpus:
            state = state_of(reading)
            if state is None:
                continue
            gpu_id = gpu_ids[reading.uuid]
            if gpu_id not in last:
                row = conn.execute(_LAST, (gpu_id,)).fetchone()
                last[gpu_id] = None if row is None else (row[0], tuple(row[1:]))
            held = last[gpu_id]
            if held is not None and tick.ts < held[0]:
                # older than the newest row: a replay after an outage, which may come after the
                # live ticks. Judged against the row that held at its own time.
                if _changes_history(conn, gpu_id, tick.ts, state):
                    conn.execute(_INSERT, (gpu_id, tick.ts, *state))
            elif held is None or changed(held[1], held[0], state, tick.ts):
                conn.execute(_INSERT, (gpu_id, tick.ts, *state))
                last[gpu_id] = (tick.ts, state)


def _changes_history(conn: sqlite3.Connection, gpu_id: int, ts: float, state: State) -> bool:
    """Return whether a state at ts differs from the GPU's row at or before ts (none: it does)."""
    row = conn.execute(_AT_OR_BEFORE, (gpu_id, ts)).fetchone()
    if row is None:
        return True
    return row[0] < ts and _at_once(tuple(row[1:])) != _at_once(state)


def _flag(value: bool | None) -> int | None:
    return None if value is None else int(value)


def _at_once(state: State) -> State:
    """Return the part of a state whose change is stored at once."""
    kept = tuple(value for value, slow in zip(state, _SLOW, strict=True) if not slow)
    reasons = state[_REASONS]
    return (*kept, None if reasons is None else reasons & LIMITING_REASONS_MASK)
