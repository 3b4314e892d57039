"""Turn each tick's process lists into process spans: the pure part of the writer's process storage.

- A span: one process on one GPU over an unbroken run of ticks at one memory size, first and
  last tick start_ts and end_ts (covering [start_ts, end_ts + interval_s)).
- A tick extends a span when the process is on it with the same kind and memory and the span's
  last tick is at most MAX_GAP_INTERVALS before it; anything else (left and came back, changed
  memory, missing from a tick) starts a new span.
- "The same memory": within MEM_TOLERANCE_BYTES of the span's first tick, so an allocator moving
  a few MiB costs no row per tick, and the span never drifts.
- A tick whose list is unknown (None) adds and ends nothing; the next known tick comes over an
  interval late, so the spans end there and the unknown time counts for nobody. Runs of known
  lists are spans of the pseudo process LIST_KNOWN_PROC_ID: "nobody" and "unknown" stay apart.
- Open spans are kept per GPU in memory; a tick newer than the GPU's newest is placed with them
  alone (`OpenSpans.advance`). An older tick (a replay) is placed against the spans around it
  read from the file (`place`): a no-op inside a span; beside one of the same memory it extends
  it, or joins two.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from common.messages import GpuProcess
from common.schema import KIND_CODES, LIST_KNOWN_PROC_ID

MAX_GAP_INTERVALS = 1.5
MEM_TOLERANCE_BYTES = 32 << 20  # 32 MiB


def same_memory(span_bytes: int | None, tick_bytes: int | None) -> bool:
    """Return whether a tick's memory may extend a span's: both unknown, or within the bound."""
    if span_bytes is None or tick_bytes is None:
        return span_bytes is tick_bytes
    return abs(span_bytes - tick_bytes) <= MEM_TOLERANCE_BYTES


SpanKey = tuple[int, int]  # (proc_id, kind code)
Identity = tuple[int, bool, str | None, str | None, str | None, str | None, str | None]


@dataclass
class Span:
    """One process on one GPU from start_ts to end_ts (UTC epoch s, both tick times)."""

    proc_id: int
    kind: int
    start_ts: float
    end_ts: float
    used_mem_bytes: int | None

    @property
    def key(self) -> SpanKey:
        """Return (proc_id, kind)."""
        return self.proc_id, self.kind


def identity_of(process: GpuProcess) -> Identity:
    """Return what makes a process the same one across ticks and GPUs of one host."""
    return (
        process.pid,
        process.visible,
        process.name,
        process.cmdline,
        process.user,
        process.container_id,
        process.container_name,
    )


def merged_processes(
    processes: Iterable[GpuProcess],
) -> dict[tuple[Identity, int], int | None]:
    """Return {(identity, kind code): used_mem_bytes} of one GPU's list, duplicates added up.

    NVML may list a process twice on one GPU (once per MIG instance): its memory is the sum of
    the known values, None when none is known.
    """
    merged: dict[tuple[Identity, int], int | None] = {}
    for process in processes:
        key = (identity_of(process), KIND_CODES[process.kind])
        if key not in merged:
            merged[key] = process.used_mem_bytes
        elif process.used_mem_bytes is not None:
            merged[key] = (merged[key] or 0) + process.used_mem_bytes
    return merged


def max_gap_s(interval_s: float) -> float:
    """Return the largest time between two ticks (s) that one span may join."""
    return MAX_GAP_INTERVALS * interval_s


@dataclass
class _GpuSpans:
    latest_ts: float
    spans: dict[SpanKey, Span] = field(default_factory=dict)


@dataclass
class Advance:
    """What one tick changed: spans to insert, and spans whose end_ts moved."""

    new: list[Span] = field(default_factory=list)
    extended: list[Span] = field(default_factory=list)


class OpenSpans:
    """Each GPU's newest tick time and its spans that the next tick may extend."""

    def __init__(self) -> None:
        self._gpus: dict[int, _GpuSpans] = {}

    def load(self, gpu_id: int, latest_ts: float, spans: Iterable[Span]) -> None:
        """Set a GPU's state from the file: its newest tick and its spans that may go on."""
        self._gpus[gpu_id] = _GpuSpans(latest_ts, {span.key: span for span in spans})

    def knows(self, gpu_id: int) -> bool:
        """Return whether the GPU's state is loaded."""
        return gpu_id in self._gpus

    def is_newest(self, gpu_id: int, ts: float) -> bool:
        """Return whether ts is after the GPU's newest tick (or the GPU is new)."""
        state = self._gpus.get(gpu_id)
        return state is None or ts > state.latest_ts

    def advance(
        self,
        gpu_id: int,
        ts: float,
        interval_s: float,
        entries: Mapping[SpanKey, int | None] | None,
    ) -> Advance:
        """Place a tick newer than the GPU's newest; entries None means the list is unknown.

        entries: {(proc_id, kind): used_mem_bytes}, without the LIST_KNOWN entry (added here).
        """
        state = self._gpus.setdefault(gpu_id, _GpuSpans(ts))
        state.latest_ts = ts
        changed = Advance()
        if entries is None:
            return changed
        gap_s = max_gap_s(interval_s)
        kept: dict[SpanKey, Span] = {}
        for key, used_mem_bytes in {**entries, (LIST_KNOWN_PROC_ID, 0): None}.items():
            span = state.spans.get(key)
            if (
                span is not None
                and same_memory(span.used_mem_bytes, used_mem_bytes)
                and 0 < ts - span.end_ts <= gap_s
            ):
                span.end_ts = ts
                changed.extended.append(span)
            else:
                span = Span(key[0], key[1], ts, ts, used_mem_bytes)
                changed.new.append(span)
            kept[key] = span
        state.spans = kept  # a span not on this tick has ended
        return changed


@dataclass(frozen=True)
class Placement:
    """Where an older tick goes among the spans of its process around it.

    action: "none" (inside a span already), "extend" (end_ts of `before` to ts), "prepend"
    (start_ts of `after` to ts), "join" (`before` takes `after`'s end_ts; `after` is deleted) or
    "new" (a span of its own).
    """

    action: str
    before: Span | None = None
    after: Span | None = None


def place(
    ts: float, used_mem_bytes: int | None, around: Iterable[Span], interval_s: float
) -> Placement:
    """Return where a tick at ts of one process goes, given that process's spans near ts."""
    gap_s = max_gap_s(interval_s)
    before = after = None
    for span in around:
        if span.start_ts <= ts <= span.end_ts:
            return Placement("none")
        if not same_memory(span.used_mem_bytes, used_mem_bytes):
            continue
        if 0 < ts - span.end_ts <= gap_s:
            before = span
        elif 0 < span.start_ts - ts <= gap_s:
            after = span
    if (
        before is not None
        and after is not None
        and before.used_mem_bytes == after.used_mem_bytes  # a join keeps before's memory
    ):
        return Placement("join", before, after)
    if before is not None:
        return Placement("extend", before)
    if after is not None:
        return Placement("prepend", after=after)
    return Placement("new")
