"""Since when each GPU's health findings hold, and its last XID, from the live feed's ticks.

- A finding (common/health.py) starts at the first tick the feed receives that shows it and
  lasts while each newer tick still shows its kind; its text follows the newest tick.
- The last XID of each GPU is kept (dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is "the value of the
  last XID"); the file's newest XID (services/web/fleet.py) covers what came before this start.
- Bounded like the feed's error runs: a GPU that leaves its host's newest tick is forgotten.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from common.health import Finding, findings, is_busy
from common.messages import GpuReading, Tick, XidEvent
from services.web.rows import GpuLatest


@dataclass(frozen=True)
class HeldFinding:
    """A finding and the time of the first tick that showed it (UTC epoch s)."""

    kind: str
    text: str
    since_ts: float


def busy(reading: GpuReading) -> bool:
    """Return whether the GPU works hard, which judges its PCIe generation."""
    return is_busy(reading.util_gpu_pct)


class HealthWatch:
    """Per GPU UUID: its findings' start times and its last XID."""

    def __init__(self) -> None:
        self._since: dict[str, dict[str, float]] = {}
        self._last_xid: dict[str, XidEvent] = {}
        self._stored_xid: dict[str, XidEvent] = {}  # the file's newest, learned by the API

    def follow(self, tick: Tick, previous: Tick | None) -> None:
        """Take a host's new newest tick (previous: the one it replaces)."""
        if previous is not None:
            kept = {reading.uuid for reading in tick.gpus}
            for reading in previous.gpus:
                if reading.uuid not in kept:
                    self._since.pop(reading.uuid, None)
                    self._last_xid.pop(reading.uuid, None)
                    self._stored_xid.pop(reading.uuid, None)
        for reading in tick.gpus:
            if reading.xid_events:
                self._last_xid[reading.uuid] = max(reading.xid_events, key=lambda e: e.ts)
            if reading.error is not None:
                self._since.setdefault(reading.uuid, {})  # followed, its findings standing
                continue  # a reading in error tells nothing of its findings
            held = self._since.get(reading.uuid, {})
            now = {f.kind for f in findings(reading.health, reading.limits, busy(reading))}
            self._since[reading.uuid] = {kind: held.get(kind, tick.ts) for kind in now}

    def learn_stored(self, stored: Iterable[GpuLatest]) -> None:
        """Take the file's newest XID of each GPU the feed follows, where newer than the feed's:
        one that happened before this process started is then in the live answers too."""
        for item in stored:
            uuid = item.gpu.gpu_uuid
            if item.last_xid is not None and uuid in self._since:
                ts, code = item.last_xid
                self._stored_xid[uuid] = XidEvent(ts, code)

    def last_xid(self, gpu_uuid: str) -> XidEvent | None:
        """Return the GPU's last XID the feed received, None when none since this started
        (/metrics: dcgm-exporter's DCGM_FI_DEV_XID_ERRORS is what it has seen itself)."""
        return self._last_xid.get(gpu_uuid)

    def known_xid(self, gpu_uuid: str) -> XidEvent | None:
        """Return the newer of the GPU's last XID the feed received and the file's newest."""
        known = [x for x in (self._last_xid.get(gpu_uuid), self._stored_xid.get(gpu_uuid)) if x]
        return max(known, key=lambda xid: (xid.ts, xid.code), default=None)

    def held(self, tick: Tick, reading: GpuReading) -> list[HeldFinding]:
        """Return the GPU's findings in its newest reading, each since when it holds."""
        since = self._since.get(reading.uuid, {})
        found: list[Finding] = findings(reading.health, reading.limits, busy(reading))
        return [HeldFinding(f.kind, f.text, since.get(f.kind, tick.ts)) for f in found]
