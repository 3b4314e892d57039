"""Shared fixtures: a ZeroMQ context, and fake clocks to inject instead of sleeping."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import zmq

from common.messages import GpuReading, Tick


@pytest.fixture
def zmq_context() -> Iterator[zmq.Context]:
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class FakeClock:
    """A wall clock (UTC epoch seconds) and a monotonic clock that move only when told to."""

    def __init__(self, wall_s: float = 1_700_000_000.0, monotonic_s: float = 1000.0) -> None:
        self.wall_s = wall_s
        self.monotonic_s = monotonic_s

    def wall(self) -> float:
        return self.wall_s

    def monotonic(self) -> float:
        return self.monotonic_s

    def advance(self, seconds: float) -> None:
        """Let time pass: both clocks move together."""
        self.wall_s += seconds
        self.monotonic_s += seconds

    def step_wall(self, seconds: float) -> None:
        """Step the wall clock alone, as NTP or an admin does; the monotonic clock is untouched."""
        self.wall_s += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def started(nvml: Any, clock: FakeClock, host: str = "testhost") -> Any:
    """Return a started GpuReader over nvml (a SimulatedNvml) on the fake clock's two clocks."""
    from services.sampler.nvml import GpuReader

    reader = GpuReader(nvml, monotonic=clock.monotonic, wall=clock.wall, host=host)
    reader.start()
    return reader


def tick_after(reader: Any, clock: FakeClock, step_s: float = 10.0) -> list[Any]:
    """Let step_s pass on the clock, read a tick; return its GPU readings."""
    clock.advance(step_s)
    return reader.read().gpus


def numbered_tick(
    host: str,
    sampler_id: str,
    seq: int,
    ts: float,
    interval_s: float,
    gpu_count: int,
    name: str,
    values: Callable[[int], dict[str, Any]],
) -> Tick:
    """Return a tick of GPUs 0..gpu_count-1 ("GPU-0000", ...), all named `name`, each reading's
    other fields values(index)."""
    readings = [
        GpuReading(index=index, uuid=f"GPU-{index:04d}", name=name, **values(index))
        for index in range(gpu_count)
    ]
    return Tick(
        host=host, sampler_id=sampler_id, seq=seq, ts=ts, interval_s=interval_s, gpus=readings
    )
