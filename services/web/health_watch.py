"""Since when each GPU's health findings hold, and its last XID, from the live feed's ticks.

- A finding (common/health.py) starts at the first tick the feed receives that shows it and
  lasts while each newer tick still shows its kind; its text follows the newest tick.
- The last XID of each GPU is kept (dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is "the value of the
  last XID"); the file's newest XID (services/web/fleet.py) covers what came before this start.
- Bounded like the feed's error runs: a GPU that leaves its host's newest tick is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable

from common import health
from common.health import reading_findings
from common.messages import GpuReading, Tick, XidEvent
from services.web.rows import GpuLatest
from services.web.shapes import Finding


class HealthWatch:
    """Per GPU UUID: its findings' start times and its last XID."""

    def __init__(self) -> None:
        self._since: dict[str, dict[str, float]] = {}
        # the findings of the newest followed tick, since when each holds: (its ts, findings)
        self._held: dict[str, tuple[float, list[Finding]]] = {}
        self._last_xid: dict[str, XidEvent] = {}
        self._stored_xid: dict[str, XidEvent] = {}  # the file's newest, learned by the API

    def follow(self, tick: Tick, previous: Tick | None) -> None:
        """Take a host's new newest tick (previous: the one it replaces)."""
        if previous is not None:
            kept = {reading.uuid for reading in tick.gpus}
            for reading in previous.gpus:
                if reading.uuid not in kept:
                    self._since.pop(reading.uuid, None)
                    self._held.pop(reading.uuid, None)
                    self._last_xid.pop(reading.uuid, None)
                    self._stored_xid.pop(reading.uuid, None)
        for reading in tick.gpus:
            if reading.xid_events:
                self._last_xid[reading.uuid] = max(reading.xid_events, key=lambda e: e.ts)
            if reading.error is not None:
                self._since.setdefault(reading.uuid, {})  # followed, its findings standing
                continue  # a reading in error tells nothing of its findings
            held = self._since.get(reading.uuid, {})
            found = reading_findings(reading)
            since = {f.kind: held.get(f.kind, tick.ts) for f in found}
            self._since[reading.uuid] = since
            self._held[reading.uuid] = (tick.ts, _since(found, since, tick.ts))

    def learn_stored(self, stored: Iterable[GpuLatest]) -> None:
        """Take the file's newest XID of each GPU (known_xid() picks the newer of it and the
        feed's): one from before this process started is then live too, also for a GPU whose
        first tick the feed has not received yet. As many as the file has GPUs; a GPU that
        leaves its host's ticks is forgotten."""
        for item in stored:
            if item.last_xid is not None:
                ts, code = item.last_xid
                self._stored_xid[item.gpu.gpu_uuid] = XidEvent(ts, code)

    def last_xid(self, gpu_uuid: str) -> XidEvent | None:
        """Return the GPU's last XID the feed received, None when none since this started
        (/metrics: dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is what it has seen itself)."""
        return self._last_xid.get(gpu_uuid)

    def known_xid(self, gpu_uuid: str) -> XidEvent | None:
        """Return the newer of the GPU's last XID the feed received and the file's newest."""
        known = [x for x in (self._last_xid.get(gpu_uuid), self._stored_xid.get(gpu_uuid)) if x]
        return max(known, key=lambda xid: (xid.ts, xid.code), default=None)

    def held(self, tick: Tick, reading: GpuReading) -> list[Finding]:
        """Return the GPU's findings in its newest reading, each since when it holds (those of
        the tick follow() took, as it found them; another tick's, found now)."""
        cached = self._held.get(reading.uuid)
        if cached is not None and cached[0] == tick.ts and reading.error is None:
            return cached[1]
        since = self._since.get(reading.uuid, {})
        return _since(reading_findings(reading), since, tick.ts)


def _since(found: list[health.Finding], since: dict[str, float], ts: float) -> list[Finding]:
    """Return the findings as the API shows them, each since when it holds (else since ts)."""
    return [Finding(f.kind, f.text, since.get(f.kind, ts)) for f in found]
