"""The closed buckets of recent history answers, kept so that a long range reads only its open edge.

A bucket is closed once the GPU has a reading at or after its end: readings arrive in time
order, so none will land in it. Not always: a sampler replaying after an outage, an import or
the retention purge can change a closed bucket. So a cached stretch is used only after one
cheap aggregate query (the readings counted in that stretch, from the same table the buckets
come from) equals the sum of its cached counts; otherwise it is read again. An entry keeps the
counts as ints (to sum them) and each metric's means and maxima as the JSON text SQLite wrote,
so that neither a miss nor a hit decodes and encodes the values again; the entries sit under a
lock, shared by the range-read threads, least recently used dropped first past max_bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

# What one cached count may cost: a list slot (8 B) and the largest boxed int it holds (32 B).
COUNT_BYTES = 40
# What one str costs beyond its ASCII characters (CPython's header, rounded up).
TEXT_OVERHEAD_BYTES = 64
ENTRY_OVERHEAD_BYTES = 512

# (gpu_id, step_s, rollup level or None for the raw rows, metrics)
CacheKey = tuple[int, int, int | None, tuple[str, ...]]


def items_slice(items: str, count: int, low: int, high: int) -> str:
    """Return items low..high-1 of `items`, the `count` comma-separated values of a JSON array
    without its brackets (numbers and nulls: no value holds a comma).

    The cost follows what is cut off, not the array: a range that moved by a bucket splits
    off one value at each end.
    """
    if low >= high:
        return ""
    if low > 0:
        items = items.split(",", low)[-1]
    if high < count:
        items = items.rsplit(",", count - high)[0]
    return items


def items_join(first: str, second: str) -> str:
    """Return two arrays' items (as items_slice's) as one, either possibly empty."""
    if not first:
        return second
    return first + "," + second if second else first


@dataclass(frozen=True)
class Columns:
    """A GPU's buckets first.. as columns: counts, and {metric: items} of the means and of the
    maxima, each the values of a JSON array without its brackets (items_slice)."""

    first: int  # the bucket number of counts[0]
    counts: list[int]
    means: dict[str, str]
    maxima: dict[str, str]
    # The counts as items too (as SQLite wrote them), where at hand: the answer then places
    # them as they are rather than print every int again (~3 ms of 30 days of 64 GPUs).
    counts_items: str | None = None

    @property
    def end(self) -> int:
        """Return the bucket number just after the last one held."""
        return self.first + len(self.counts)

    def cost_bytes(self) -> int:
        """Return about what the entry holds in memory, from above."""
        texts = [*self.means.values(), *self.maxima.values()]
        if self.counts_items is not None:
            texts.append(self.counts_items)
        return (
            ENTRY_OVERHEAD_BYTES
            + COUNT_BYTES * len(self.counts)
            + sum(len(text) + TEXT_OVERHEAD_BYTES for text in texts)
        )

    def slice(self, start: int, stop: int) -> Columns:
        """Return buckets start..stop-1 (bucket numbers inside first..end)."""
        if start == self.first and stop == self.end:
            return self
        low, high, count = start - self.first, stop - self.first, len(self.counts)
        return Columns(
            start,
            self.counts[low:high],
            {name: items_slice(items, count, low, high) for name, items in self.means.items()},
            {name: items_slice(items, count, low, high) for name, items in self.maxima.items()},
            None if self.counts_items is None else items_slice(self.counts_items, count, low, high),
        )

    def then(self, more: Columns) -> Columns:
        """Return these buckets followed by `more`, which starts where these end."""
        return Columns(
            self.first,
            self.counts + more.counts,
            {name: items_join(items, more.means[name]) for name, items in self.means.items()},
            {name: items_join(items, more.maxima[name]) for name, items in self.maxima.items()},
            None
            if self.counts_items is None or more.counts_items is None
            else items_join(self.counts_items, more.counts_items),
        )

    def counts_json(self) -> bytes:
        """Return the counts as a JSON array."""
        items = self.counts_items
        if items is None:
            items = ",".join(map(str, self.counts))
        return ("[" + items + "]").encode()

    def means_json(self) -> bytes:
        """Return {metric: [mean...]} as JSON, in the metrics' order."""
        return _object_json(self.means)

    def maxima_json(self) -> bytes:
        """Return {metric: [max...]} as JSON, in the metrics' order."""
        return _object_json(self.maxima)


def _object_json(arrays: dict[str, str]) -> bytes:
    # Metric names are identifiers (common.metrics): nothing in them to escape.
    return ("{" + ",".join(f'"{name}":[{items}]' for name, items in arrays.items()) + "}").encode()


class HistoryCache:
    """Closed buckets per CacheKey, bounded in bytes (0: nothing is kept); thread-safe."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict[CacheKey, Columns] = OrderedDict()
        self._held_bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def held_bytes(self) -> int:
        """Return the estimated bytes of every entry held."""
        return self._held_bytes

    def get(self, key: CacheKey) -> Columns | None:
        """Return the closed buckets held for key, None when none."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry

    def put(self, key: CacheKey, entry: Columns) -> None:
        """Keep entry for key (replacing any), then drop the least recently used past the bound."""
        cost = entry.cost_bytes()
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._held_bytes -= old.cost_bytes()
            if cost > self.max_bytes:
                return
            self._entries[key] = entry
            self._held_bytes += cost
            while self._held_bytes > self.max_bytes:
                _, dropped = self._entries.popitem(last=False)
                self._held_bytes -= dropped.cost_bytes()


HISTORY_CACHE = web.AppKey("history_cache", HistoryCache)
