"""A GPU's health events and counts over a range, from its stored health rows and XIDs (pure).

- A row of `health_states` is the GPU's health from its ts until the next row (common.schema).
- An event is a finding that starts or ends between two rows (its kind in EVENT_KINDS), new
  uncorrected ECC errors, or an XID. A finding already there in the GPU's first row ever starts
  at that row; one already there before the range does not start again inside it.
- A count is the sum of a counter's increases between consecutive rows in the range, the row
  before the range (if any) the first: a decrease is a reset (a driver reload clears the volatile
  counters), after which the new value is what was counted since.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from common.health import FINDING_KINDS, findings, xid_text
from common.messages import GpuHealth, GpuLimits
from common.schema import HEALTH_STATE_COLUMNS

# finding kind: (event when it starts, event when it ends, the end in words)
FINDING_EVENTS: dict[str, tuple[str, str, str]] = {
    "throttled": ("throttling_started", "throttling_stopped", "throttling stopped"),
    "pcie_link": ("link_downgraded", "link_restored", "PCIe link back at its maximum"),
    "remap_pending": ("remap_pending", "remap_cleared", "no rows pending remap"),
    "remap_failure": ("remap_failure", "remap_failure_cleared", "row remapping failure cleared"),
    "retirement_pending": (
        "retirement_pending",
        "retirement_cleared",
        "no pages pending retirement",
    ),
    "nvlink_down": ("nvlink_down", "nvlink_restored", "every NVLink link up"),
}
_COLUMN = {name: index for index, name in enumerate(HEALTH_STATE_COLUMNS)}
_HEALTH_FIELDS = set(GpuHealth.__struct_fields__)


@dataclass(frozen=True)
class HealthRow:
    """One stored health row: its time and its values in HEALTH_STATE_COLUMNS order."""

    ts: float
    values: Sequence[int | None]

    def get(self, name: str) -> int | None:
        return self.values[_COLUMN[name]]

    def kinds(self) -> set[str]:
        bits = self.get("findings") or 0
        return {kind for index, kind in enumerate(FINDING_KINDS) if bits & (1 << index)}


@dataclass(frozen=True)
class Event:
    """One event of one GPU: when, its kind, its XID code (None for others), in words."""

    ts: float
    kind: str
    code: int | None
    text: str


@dataclass(frozen=True)
class Counts:
    """What a GPU counted over a range: None where none of its rows in it knew the counter."""

    xids: int
    ecc_corrected: int | None
    ecc_uncorrected: int | None
    thermal_violation_s: float | None
    power_violation_s: float | None
    pcie_replays: int | None


def finding_texts(row: HealthRow) -> dict[str, str]:
    """Return each finding of the row in words, by kind."""
    values = {
        name: bool(value) if name.endswith(("_pending", "_failure")) else value
        for name, value in zip(HEALTH_STATE_COLUMNS, row.values, strict=True)
        if name in _HEALTH_FIELDS and value is not None
    }
    limits = GpuLimits(
        pcie_max_gen=row.get("pcie_max_gen"),
        pcie_max_width=row.get("pcie_max_width"),
        nvlink_links=row.get("nvlink_links"),
    )
    busy = "pcie_link" in row.kinds()  # the writer judged the link: as it found it
    return {f.kind: f.text for f in findings(GpuHealth(**values), limits, busy)}


def row_events(rows: Iterable[HealthRow], from_s: float, to_s: float) -> Iterator[Event]:
    """Yield the events between consecutive rows (ts order), those whose row is in the range."""
    previous: HealthRow | None = None
    for row in rows:
        if from_s <= row.ts <= to_s:
            yield from _changes(previous, row)
        previous = row


def _changes(previous: HealthRow | None, row: HealthRow) -> Iterator[Event]:
    before = set() if previous is None else previous.kinds()
    now = row.kinds()
    texts = finding_texts(row) if now - before else {}
    for kind in FINDING_KINDS:
        if kind not in FINDING_EVENTS:
            continue
        started, ended, ended_text = FINDING_EVENTS[kind]
        if kind in now and kind not in before:
            yield Event(row.ts, started, None, texts.get(kind, kind))
        elif kind in before and kind not in now:
            yield Event(row.ts, ended, None, ended_text)
    if previous is not None:
        new = _increase(_ecc_uncorrected(previous), _ecc_uncorrected(row))
        if new:
            noun = "error" if new == 1 else "errors"
            yield Event(row.ts, "ecc_uncorrected", None, f"{new} new uncorrected ECC {noun}")


def xid_event(ts: float, code: int) -> Event:
    """Return an XID as an event."""
    return Event(ts, "xid", code, xid_text(code))


_SPREAD = frozenset({"thermal_violation_ns", "power_violation_ns"})
_COUNTED = (
    "ecc_corrected_aggregate",
    "ecc_corrected_volatile",
    "ecc_uncorrected_aggregate",
    "ecc_uncorrected_volatile",
    "thermal_violation_ns",
    "power_violation_ns",
    "pcie_replays",
)


class Counter:
    """The increases of each counted column over the range, taken one row at a time.

    Rows come in time order: the one before the range (if any), those in it, the first after
    it (if any). An error counter's increase between two rows counts where the later row is in
    the range. A violation time is spread evenly over the time between its two rows, and the
    part inside the range counts: a row may be up to ten minutes from the next (the writer's
    COUNTER_ROW_S), and a range inside that gap gets its share, never more than its length.
    """

    def __init__(self, from_s: float = float("-inf"), to_s: float = float("inf")) -> None:
        self._from_s, self._to_s = from_s, to_s
        self._last: dict[str, tuple[float, int] | None] = dict.fromkeys(_COUNTED)
        self._sum: dict[str, float | None] = dict.fromkeys(_COUNTED)

    def take(self, row: HealthRow) -> None:
        """Count the row."""
        inside = self._from_s <= row.ts <= self._to_s
        for name in _COUNTED:
            value = row.get(name)
            if value is None:
                continue
            last = self._last[name]
            if self._sum[name] is None:
                self._sum[name] = 0  # known from here on
            if name in _SPREAD:
                share = 0.0 if last is None else _overlap(last[0], row.ts, self._from_s, self._to_s)
                if share or inside:
                    added = _increase(None if last is None else last[1], value) * share
                    self._sum[name] = (self._sum[name] or 0) + added
            elif inside:
                added = _increase(None if last is None else last[1], value)
                self._sum[name] = (self._sum[name] or 0) + added
            self._last[name] = (row.ts, value)

    def counts(self, xids: int) -> Counts:
        """Return the totals (an aggregate counter where the GPU keeps one, else volatile)."""
        return Counts(
            xids=xids,
            ecc_corrected=self._first("ecc_corrected_aggregate", "ecc_corrected_volatile"),
            ecc_uncorrected=self._first("ecc_uncorrected_aggregate", "ecc_uncorrected_volatile"),
            thermal_violation_s=self._seconds("thermal_violation_ns"),
            power_violation_s=self._seconds("power_violation_ns"),
            pcie_replays=_whole(self._sum["pcie_replays"]),
        )

    def _first(self, *names: str) -> int | None:
        return next((_whole(self._sum[n]) for n in names if self._sum[n] is not None), None)

    def _seconds(self, name: str) -> float | None:
        ns = self._sum[name]
        return None if ns is None else min(ns / 1e9, max(0.0, self._to_s - self._from_s))


def _ecc_uncorrected(row: HealthRow) -> int | None:
    aggregate = row.get("ecc_uncorrected_aggregate")
    return aggregate if aggregate is not None else row.get("ecc_uncorrected_volatile")


def _increase(before: int | None, after: int | None) -> int:
    if before is None or after is None:
        return 0
    return after - before if after >= before else after


def _overlap(start_s: float, end_s: float, from_s: float, to_s: float) -> float:
    """Return the share of [start_s, end_s] inside [from_s, to_s]."""
    if end_s <= start_s:
        return 1.0 if from_s <= end_s <= to_s else 0.0
    inside_s = min(end_s, to_s) - max(start_s, from_s)
    return max(0.0, inside_s) / (end_s - start_s)


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)
