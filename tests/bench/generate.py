"""Write a synthetic history database through the writer's own storage code.

    python -m tests.bench.generate --days 30 --gpus 8 --hosts 1 --interval 60 --out PATH

Two sources of readings, both written by services.writer.store.Store.write, so the samples, the
rollups and the GPU table are exactly what the writer would have stored:

- fast (the default): Tick and GpuReading objects built directly from cheap deterministic
  formulas that follow the simulated GPUs' ramp / train / idle cycle, with the same identities,
  units and ranges, and the fan null on every GPU but the GeForce card;
- simulated (--simulated): the simulated NVML module read through the sampler's own reader with
  a clock that steps through the past: what the sampler sends, but about 30x slower.

The last tick is at the current time, aligned to the interval; every host ticks at the same times.
"""

from __future__ import annotations

import argparse
import logging
import math
import random
import sys
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from common.messages import GpuHealth, GpuLimits, GpuReading, Tick
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import MIB, MODELS, SimulatedNvml
from services.sampler.simulated_procfs import FakeProcTree
from services.sampler.ticks import build_tick
from services.writer.store import Store, file_bytes

# Part of the cache key of generated files (tests.bench.databases): bump it when readings change.
GENERATOR_VERSION = 2  # 2: with each reading's health
READINGS_PER_COMMIT = 50_000
DRIVER_VERSION = "550.127.05-simulated"
_RESERVED_BYTES = 512 * MIB  # what the v2 memory struct counts as used on an idle GPU
_NOISE_SIZE = 4096  # a power of two: indexed with a mask
_NOISE = tuple(random.Random(20261128).random() for _ in range(_NOISE_SIZE))


class _SteppedClock:
    """A wall clock that a generator moves by hand."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def host_ticks(
    host: str, gpus: int, first_ts: float, count: int, interval_s: float
) -> Iterator[Tick]:
    """Yield `count` ticks of one simulated host read through the sampler's NVML reader."""
    clock = _SteppedClock()
    # Its own fake /proc, as the sampler keeps one: the made-up PIDs must not resolve against
    # this machine's real processes (GpuReader resolves against the module's tree).
    nvml = SimulatedNvml(gpus, host=host, clock=clock, proc_tree=FakeProcTree())
    reader = GpuReader(nvml, monotonic=clock, wall=clock)  # its own time: in the past too
    reader.start()
    for seq in range(count):
        clock.now_s = first_ts + seq * interval_s
        yield build_tick(reader.read(), host, f"gen-{host}", seq, clock.now_s, interval_s)


@dataclass(frozen=True)
class _FastGpu:
    """What the formulas need of one GPU; watts, bytes and MHz, as on the wire."""

    index: int
    uuid: str
    name: str
    pci_bus_id: str
    salt: int  # offsets the noise table, so that GPUs do not jitter in step
    period_s: float
    phase_s: float
    mem_total_bytes: int
    power_limit_w: float
    idle_power_w: float
    busy_power_w: float
    max_sm_clock_mhz: int
    mem_clock_mhz: int
    has_fan: bool
    energy_start_j: float
    hbm: bool  # memory temperature, NVLink, ECC with row remapping
    gpm: bool  # Hopper: GPU performance metrics
    limits: GpuLimits


def _fast_gpus(host: str, gpus: int, host_number: int) -> list[_FastGpu]:
    """Return the GPUs of a host, with the simulated module's names, UUIDs and bus ids."""
    seeds = random.Random(f"{host}/seeds")
    made = []
    for index in range(gpus):
        model = MODELS[index % len(MODELS)]
        seed = seeds.random()
        made.append(
            _FastGpu(
                index=index,
                uuid="GPU-" + str(uuid.uuid5(uuid.NAMESPACE_DNS, f"{host}.gpu{index}.pycudawatch")),
                name=model.name,
                pci_bus_id=f"00000000:{0x17 + index * 0x10:02X}:00.0",
                salt=(host_number * 131 + index * 977) & (_NOISE_SIZE - 1),
                period_s=1200 + 1800 * seed,
                phase_s=seed * 3600,
                mem_total_bytes=model.mem_total_bytes,
                power_limit_w=model.power_limit_mw / 1000,
                idle_power_w=model.idle_power_mw / 1000,
                busy_power_w=model.power_limit_mw * 0.92 / 1000,
                max_sm_clock_mhz=model.max_sm_clock_mhz,
                mem_clock_mhz=model.mem_clock_mhz,
                has_fan=model.has_fan,
                energy_start_j=3_600_000.0 * (index + 1),
                hbm="HBM" in model.name or "SXM" in model.name,
                gpm="H100" in model.name or "H200" in model.name,
                limits=GpuLimits(
                    max_sm_clock_mhz=model.max_sm_clock_mhz,
                    max_mem_clock_mhz=model.mem_clock_mhz,
                    pcie_max_gen=5 if "H100" in model.name else 4,
                    pcie_max_width=16,
                    nvlink_links=18 if "H100" in model.name else 12 if "SXM" in model.name else 0,
                ),
            )
        )
    return made


class _HealthCounters:
    """One GPU's health counters, as the simulated GPUs keep them, and its health per reading."""

    def __init__(self, corrected: int) -> None:
        self.power_ns = 0
        self.corrected = corrected
        self.replays = 3

    def health(self, gpu: _FastGpu, load: float, jitter: float, interval_s: float) -> GpuHealth:
        busy = load > 0.02
        capped = load > 0.85  # the top of the training jitter reaches the power limit
        if capped:
            self.power_ns += int(interval_s * 1e9 * (load - 0.85) / 0.15)
        if busy and jitter > 0.999:  # a corrected ECC error or a replay every few hours
            self.corrected += gpu.hbm
            self.replays += 1
        active = 100 * load
        gpm = gpu.gpm and busy
        return GpuHealth(
            clocks_event_reasons=(0x4 if capped else 0) if busy else 0x1,
            power_violation_ns=self.power_ns,
            thermal_violation_ns=0,
            ecc_corrected_volatile=self.corrected if gpu.hbm else None,
            ecc_uncorrected_volatile=0 if gpu.hbm else None,
            ecc_corrected_aggregate=self.corrected if gpu.hbm else None,
            ecc_uncorrected_aggregate=0 if gpu.hbm else None,
            remapped_rows_correctable=0 if gpu.hbm else None,
            remapped_rows_uncorrectable=0 if gpu.hbm else None,
            remap_pending=False if gpu.hbm else None,
            remap_failure=False if gpu.hbm else None,
            pcie_link_gen=gpu.limits.pcie_max_gen if busy else 1,
            pcie_link_width=16,
            pcie_tx_kb_per_s=int(30 + 400_000 * load * (0.8 + 0.4 * jitter)),
            pcie_rx_kb_per_s=int(60 + 1_600_000 * load * (0.8 + 0.4 * jitter)),
            pcie_replays=self.replays,
            nvlink_links_active=gpu.limits.nvlink_links or None,
            enc_util_pct=0,
            dec_util_pct=int(20 * jitter) if busy and jitter > 0.9 else 0,
            mem_temp_c=int(35.5 + 45 * load + 2 * jitter) if gpu.hbm else None,
            gr_engine_active_pct=active if gpu.gpm else None,
            sm_active_pct=0.92 * active if gpm else (0.0 if gpu.gpm else None),
            sm_occupancy_pct=0.45 * active if gpm else (0.0 if gpu.gpm else None),
            tensor_active_pct=0.7 * active if gpm else (0.0 if gpu.gpm else None),
            dram_active_pct=0.4 * active if gpm else (0.0 if gpu.gpm else None),
            fp64_active_pct=0.0 if gpu.gpm else None,
            fp32_active_pct=0.1 * active if gpm else (0.0 if gpu.gpm else None),
            fp16_active_pct=0.6 * active if gpm else (0.0 if gpu.gpm else None),
        )


def fast_host_ticks(
    host: str, gpus: int, first_ts: float, count: int, interval_s: float, host_number: int = 0
) -> Iterator[Tick]:
    """Yield `count` ticks of one host whose readings come from cheap deterministic formulas.

    Load follows the simulated GPUs' cycle (ramp 10%, train 60% with jitter, idle 30%);
    utilization, memory, temperature, power, energy (a counter), clocks and P-state follow it.
    """
    fleet = _fast_gpus(host, gpus, host_number)
    energy_j = [gpu.energy_start_j for gpu in fleet]
    sampler_id = f"gen-{host}"
    mask = _NOISE_SIZE - 1
    noise = _NOISE
    counters = [_HealthCounters(index * 7) for index in range(len(fleet))]
    for seq in range(count):
        ts = first_ts + seq * interval_s
        wave = 0.08 * math.sin(2 * math.pi * ts / 97)
        readings = []
        for gpu in fleet:
            jitter = noise[(seq + gpu.salt) & mask]
            position = ((ts + gpu.phase_s) % gpu.period_s) / gpu.period_s
            if position < 0.1:
                load = position * 10
                fill = 0.02 + 8 * position
            elif position < 0.7:
                load = min(1.0, 0.81 + wave + 0.1 * jitter)
                fill = 0.82 + 0.05 * noise[(seq * 7 + gpu.salt) & mask]
            else:
                load = fill = 0.0
            busy = load > 0.02
            power_w = int(1000 * (gpu.idle_power_w + (gpu.busy_power_w - gpu.idle_power_w) * load))
            power_w /= 1000
            energy_j[gpu.index] += power_w * interval_s
            util = int(100 * load + 0.5)
            total = gpu.mem_total_bytes
            readings.append(
                GpuReading(
                    gpu.index,
                    gpu.uuid,
                    gpu.name,
                    gpu.pci_bus_id,
                    None,
                    util,
                    int(util * 0.45 + 0.5),
                    _RESERVED_BYTES + int((total - _RESERVED_BYTES) * fill) // MIB * MIB,
                    total,
                    int(33.5 + 48 * load + 2 * jitter),
                    power_w,
                    gpu.power_limit_w,
                    energy_j[gpu.index],
                    int(30.5 + 55 * load) if gpu.has_fan else None,
                    int(210.5 + (gpu.max_sm_clock_mhz - 210) * min(1.0, 3 * load)),
                    gpu.mem_clock_mhz if busy else 405,
                    0 if busy else 8,
                    health=counters[gpu.index].health(gpu, load, jitter, interval_s),
                    limits=gpu.limits,
                )
            )
        yield Tick(host, sampler_id, seq, ts, interval_s, DRIVER_VERSION, None, readings)


def generate(
    out: Path, days: float, gpus: int, hosts: int, interval_s: float, *, fast: bool = True
) -> int:
    """Write the database; return the readings written."""
    count = int(days * 86400 / interval_s)
    last_ts = (time.time() // interval_s) * interval_s
    first_ts = last_ts - (count - 1) * interval_s
    streams = [
        fast_host_ticks(f"host{h:02d}", gpus, first_ts, count, interval_s, h)
        if fast
        else host_ticks(f"host{h:02d}", gpus, first_ts, count, interval_s)
        for h in range(hosts)
    ]
    interleaved = (tick for ticks in zip(*streams, strict=True) for tick in ticks)
    return write_ticks(out, interleaved)


def write_ticks(out: Path, ticks: Iterable[Tick]) -> int:
    """Store ticks through the writer's own Store, about READINGS_PER_COMMIT readings a commit;
    return the readings written."""
    store = Store(out)
    written, batch, pending = 0, [], 0
    try:
        for tick in ticks:
            batch.append(tick)
            pending += len(tick.gpus)
            if pending >= READINGS_PER_COMMIT:
                written += store.write(batch)
                batch, pending = [], 0
        if batch:
            written += store.write(batch)
    finally:
        store.close()
    return written


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, generate, and report size and time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--gpus", type=int, default=8, help="GPUs per host")
    parser.add_argument("--hosts", type=int, default=1)
    parser.add_argument("--interval", type=float, default=60, help="seconds between ticks")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument(
        "--simulated",
        action="store_true",
        help="read the simulated NVML module through the sampler's reader (slow, exact)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)  # the simulated fan is not supported: expected
    if args.out.exists():
        parser.error(f"{args.out} exists; give a new path")
    started = time.perf_counter()
    written = generate(
        args.out, args.days, args.gpus, args.hosts, args.interval, fast=not args.simulated
    )
    elapsed = time.perf_counter() - started
    size = file_bytes(args.out)
    sys.stdout.write(
        f"{written:,} readings in {elapsed:.1f} s to {args.out}: {size / 1e6:.1f} MB, "
        f"{size / max(written, 1):.0f} bytes per reading\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
