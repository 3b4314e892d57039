"""The sizes of one benchmark run: the full suite, or the smoke mode that CI runs in < 60 s."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

DEFAULT_CACHE = Path("/tmp/pcw-bench")


@dataclass(frozen=True)
class FileSpec:
    """A synthetic history file: `hosts` x `gpus` GPUs sampled every interval_s for `days`."""

    name: str  # how the table calls it
    days: float
    gpus: int
    hosts: int
    interval_s: float

    @property
    def readings(self) -> int:
        """Return how many readings the file holds."""
        return int(self.days * 86400 / self.interval_s) * self.gpus * self.hosts

    def describe(self) -> str:
        """Return its dimensions in words."""
        hosts = f"{self.hosts} hosts x " if self.hosts > 1 else ""
        return (
            f"{self.days:g} d x {hosts}{self.gpus} GPUs x {self.interval_s:g} s "
            f"({self.readings:,} readings)"
        )


@dataclass(frozen=True)
class Sizes:
    """Every size and time budget of a run; seconds unless named otherwise."""

    smoke: bool
    small: FileSpec
    large: FileSpec
    simulated_days: float  # the slow generator's span, extrapolated to the small file
    history_ranges_s: tuple[tuple[str, int], ...]
    history_reps: int  # at most, per case
    history_budget_s: float  # per case; at least one timed run whatever it costs
    ingest_ticks: int  # of 8 GPUs; a multiple of 625, so every writer batch is full
    ingest_interval_s: float
    live_clients: tuple[int, ...]
    live_warmup_ticks: int
    live_ticks: int  # measured, after the warm-up ticks
    live_spacing_s: tuple[float, ...]  # between ticks, per client count
    sampler_warmup_s: float
    sampler_run_s: float
    cron_runs: int
    footprint_warmup_s: float
    replay_gpus: int  # per tick fed to the replay buffer
    replay_ticks: int  # fed, and the buffer's bound in ticks
    replay_bytes: int  # the buffer's bound in bytes


FULL = Sizes(
    smoke=False,
    small=FileSpec("8-GPU file", 30, 8, 1, 60),
    large=FileSpec("64-GPU file", 30, 8, 8, 10),
    simulated_days=2,
    history_ranges_s=(("1h", 3600), ("24h", 86400), ("7d", 7 * 86400), ("30d", 30 * 86400)),
    history_reps=40,
    history_budget_s=6.0,
    ingest_ticks=20_000,
    ingest_interval_s=1.0,
    live_clients=(100, 1000),
    live_warmup_ticks=5,
    live_ticks=150,
    live_spacing_s=(0.1, 0.4),
    sampler_warmup_s=2.0,
    sampler_run_s=20.0,
    cron_runs=20,
    footprint_warmup_s=5.0,
    replay_gpus=64,
    replay_ticks=1440,  # PCW_REPLAY_TICKS's default
    replay_bytes=16 << 20,  # PCW_REPLAY_BYTES's default
)

# The same sizes as FULL where a small run is as quick; smaller everywhere else.
SMOKE = replace(
    FULL,
    smoke=True,
    small=FileSpec("8-GPU file", 0.5, 8, 1, 60),
    large=FileSpec("64-GPU file", 0.05, 8, 8, 10),
    simulated_days=0.05,
    history_reps=2,
    history_budget_s=0.2,
    ingest_ticks=625,
    live_warmup_ticks=2,
    live_ticks=5,
    live_spacing_s=(0.05, 0.2),
    sampler_warmup_s=0.5,
    sampler_run_s=2.0,
    cron_runs=2,
    footprint_warmup_s=1.0,
    replay_ticks=60,
    replay_bytes=1 << 20,  # the least allowed; 60 ticks of 64 GPUs are 2.6 MB
)
