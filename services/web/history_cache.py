"""The closed buckets of recent history answers, kept so that a long range reads only its open edge.

A bucket is closed once the GPU has a reading at or after its end: readings arrive in time
order, so none will land in it. Not always: a sampler replaying after an outage, an import or
the retention purge can change a closed bucket. So a cached stretch is used only after one
cheap aggregate query (the readings counted in that stretch, from the same table the buckets
come from) equals the sum of its cached counts; otherwise it is read again. The entries are
Python lists (ints, floats, None) under a lock, shared by the range-read threads, least
recently used dropped first past max_bytes.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from aiohttp import web

# What one cached value may cost: a list slot (8 B) and the largest boxed number it holds (a float
# is 24 B, an int of 2**30 or more such as a memory size 32 B), so that the bound holds in bytes.
VALUE_BYTES = 40
ENTRY_OVERHEAD_BYTES = 512

# (gpu_id, step_s, rollup level or None for the raw rows, metrics)
CacheKey = tuple[int, int, int | None, tuple[str, ...]]


@dataclass(frozen=True)
class Columns:
    """A GPU's buckets first.. as columns: counts, {metric: means}, {metric: maxima}."""

    first: int  # the bucket number of counts[0]
    counts: list[int]
    means: dict[str, list[float | int | None]]
    maxima: dict[str, list[float | int | None]]

    @property
    def end(self) -> int:
        """Return the bucket number just after the last one held."""
        return self.first + len(self.counts)

    def cost_bytes(self) -> int:
        """Return roughly what the entry holds in memory."""
        return ENTRY_OVERHEAD_BYTES + VALUE_BYTES * len(self.counts) * (1 + 2 * len(self.means))

    def slice(self, start: int, stop: int) -> Columns:
        """Return buckets start..stop-1 (bucket numbers inside first..end)."""
        low, high = start - self.first, stop - self.first
        return Columns(
            start,
            self.counts[low:high],
            {name: values[low:high] for name, values in self.means.items()},
            {name: values[low:high] for name, values in self.maxima.items()},
        )

    def then(self, more: Columns) -> Columns:
        """Return these buckets followed by `more`, which starts where these end."""
        return Columns(
            self.first,
            self.counts + more.counts,
            {name: values + more.means[name] for name, values in self.means.items()},
            {name: values + more.maxima[name] for name, values in self.maxima.items()},
        )


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
