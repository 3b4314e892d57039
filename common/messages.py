"""The tick message from sampler to writer and web, with its own encode and decode.

Wire layout, one ZeroMQ multipart message per tick:

    frame 0: TOPIC            b"pcw.tick"
    frame 1: SCHEMA_VERSION   ASCII decimal, b"4"
    frame 2: payload          msgpack of Tick (msgspec, typed; validated on decode)

- Versions: 2 added each GPU's processes and MIG devices, 3 its free and reserved memory, 4 its
  health (GpuHealth), limits (GpuLimits), XID events, the CUDA version and each MIG device's
  instance ids, profile and GPM activity, as optional fields; an older payload decodes unchanged
  (the new fields None or empty).
- msgspec's typed msgpack was chosen by measurement: smaller and faster than stdlib json, orjson
  and msgpack, and its decode validates shape, types and ranges in the same pass.
- Pickle is never used: the payload comes from a socket.
"""

from __future__ import annotations

import operator
from typing import Annotated, Literal

import msgspec

from common.metrics import CORE_METRIC_NAMES, HEALTH_METRIC_NAMES

TOPIC = b"pcw.tick"
# What a storing subscriber (the writer) subscribes to as well as TOPIC; nothing is published on
# it. The sampler's first tick waits for it, so that the tick reaches the file, not only the web.
STORING_TOPIC = b"pcw.store"
SCHEMA_VERSION = 4
ACCEPTED_VERSIONS = (1, 2, 3, 4)
MAX_MESSAGE_BYTES = 1 << 20  # also the socket's ZMQ_MAXMSGSIZE: larger frames are dropped
MAX_EPOCH_S = 1e11  # a timestamp's bound (year 5138); the web's query parameters take it too
MAX_UUID_CHARS = 96
MAX_HOST_CHARS = 253  # a DNS name's bound

Pct = Annotated[int, msgspec.Meta(ge=0, le=100)]
Bytes = Annotated[int, msgspec.Meta(ge=0, le=1 << 60)]
Watts = Annotated[float, msgspec.Meta(ge=0, le=1e6)]
Joules = Annotated[float, msgspec.Meta(ge=0, le=1e18)]
Mhz = Annotated[int, msgspec.Meta(ge=0, le=100_000)]
Celsius = Annotated[int, msgspec.Meta(ge=-100, le=500)]
EpochS = Annotated[float, msgspec.Meta(gt=0, lt=MAX_EPOCH_S)]
Text = Annotated[str, msgspec.Meta(max_length=256)]
Count = Annotated[int, msgspec.Meta(ge=0, le=(1 << 63) - 1)]  # an NVML counter (SQLite's INTEGER)
ActivityPct = Annotated[float, msgspec.Meta(ge=0, le=100)]  # a GPM activity ratio, in percent
InstanceId = Annotated[int, msgspec.Meta(ge=0, le=1 << 32)]  # a MIG GPU or compute instance id
Small = Annotated[int, msgspec.Meta(ge=0, le=64)]  # a PCIe generation or width, a link count


class DecodeError(ValueError):
    """A message that is not a valid tick; the text says why."""


# gc=False: these never hold reference cycles, so the collector need not track the thousands
# a busy writer decodes per second (measured: a third of the decode time went to GC).
class GpuProcess(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One process holding a GPU, from NVML's process lists, resolved through /proc.

    `visible` is False when the PID is not in this sampler's /proc (a sampler in a container
    without `pid: host`): then name, cmdline, user and container are None, never made up.
    `used_mem_bytes` is None where NVML cannot tell (MIG, or Windows WDDM).
    """

    pid: Annotated[int, msgspec.Meta(ge=0, le=1 << 32)]
    kind: Literal["compute", "graphics"] = "compute"
    used_mem_bytes: Bytes | None = None
    visible: bool = False
    name: Text | None = None
    cmdline: Text | None = None
    user: Text | None = None
    container_id: Annotated[str, msgspec.Meta(max_length=128)] | None = None
    container_name: Text | None = None


class MigDevice(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One MIG instance of a MIG-enabled GPU; a metric it does not support is None, not 0.

    gpu_instance_id and compute_instance_id are NVML's (dcgm-exporter's GPU_I_ID is the first);
    profile is the GPU instance's profile, as dcgm-exporter's GPU_I_PROFILE ("1g.10gb").
    gr_engine_active_pct: the instance's graphics engine activity from GPM (Hopper and newer),
    in percent of the time since the previous tick; None elsewhere and in a sampler's first tick.
    """

    index: Annotated[int, msgspec.Meta(ge=0, le=1023)]
    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_UUID_CHARS)]
    name: Text
    mem_used_bytes: Bytes | None = None
    mem_total_bytes: Bytes | None = None
    util_gpu_pct: Pct | None = None
    gpu_instance_id: InstanceId | None = None
    compute_instance_id: InstanceId | None = None
    profile: Text | None = None
    gr_engine_active_pct: ActivityPct | None = None


class GpuHealth(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True, gc=False):
    """What a GPU says of its health in one tick; each is None where it cannot tell (never 0).

    - clocks_event_reasons: NVML's bitmask of why the clocks are below their maximum
      (common/health.py names the bits).
    - *_violation_ns, ecc_*, remapped_rows_*, retired_pages_*, pcie_replays, nvlink_*_kib:
      counters, as NVML keeps them (since the driver loaded, or for ever where aggregate).
    - remap_pending / remap_failure / retired_pages_pending: NVML's yes-or-no.
    - pcie_link_gen / pcie_link_width: as the link trained now (an idle GPU may drop its
      generation to save power; GpuLimits has the maximum).
    - pcie_tx_kb_per_s / pcie_rx_kb_per_s: NVML's throughput over its last 20 ms.
    - *_active_pct, sm_occupancy_pct, gpm_pcie_*_bytes_per_s: GPU performance metrics (GPM,
      Hopper and newer) over the time since the previous tick; None on GPUs without GPM and in
      a sampler's first tick.
    """

    clocks_event_reasons: Count | None = None
    power_violation_ns: Count | None = None
    thermal_violation_ns: Count | None = None
    ecc_corrected_volatile: Count | None = None
    ecc_uncorrected_volatile: Count | None = None
    ecc_corrected_aggregate: Count | None = None
    ecc_uncorrected_aggregate: Count | None = None
    remapped_rows_correctable: Count | None = None
    remapped_rows_uncorrectable: Count | None = None
    remap_pending: bool | None = None
    remap_failure: bool | None = None
    retired_pages_sbe: Count | None = None
    retired_pages_dbe: Count | None = None
    retired_pages_pending: bool | None = None
    pcie_link_gen: Small | None = None
    pcie_link_width: Small | None = None
    pcie_tx_kb_per_s: Count | None = None
    pcie_rx_kb_per_s: Count | None = None
    pcie_replays: Count | None = None
    nvlink_links_active: Small | None = None
    nvlink_tx_kib: Count | None = None
    nvlink_rx_kib: Count | None = None
    enc_util_pct: Pct | None = None
    dec_util_pct: Pct | None = None
    mem_temp_c: Celsius | None = None
    gr_engine_active_pct: ActivityPct | None = None
    sm_active_pct: ActivityPct | None = None
    sm_occupancy_pct: ActivityPct | None = None
    tensor_active_pct: ActivityPct | None = None
    dram_active_pct: ActivityPct | None = None
    fp64_active_pct: ActivityPct | None = None
    fp32_active_pct: ActivityPct | None = None
    fp16_active_pct: ActivityPct | None = None
    gpm_pcie_tx_bytes_per_s: Count | None = None
    gpm_pcie_rx_bytes_per_s: Count | None = None


class GpuLimits(msgspec.Struct, array_like=True, forbid_unknown_fields=True, frozen=True, gc=False):
    """What does not change while the sampler runs: read once per GPU, sent with its identity."""

    max_sm_clock_mhz: Mhz | None = None
    max_mem_clock_mhz: Mhz | None = None
    power_limit_min_w: Watts | None = None
    power_limit_max_w: Watts | None = None
    temp_slowdown_c: Celsius | None = None
    temp_shutdown_c: Celsius | None = None
    temp_max_operating_c: Celsius | None = None
    mem_temp_max_c: Celsius | None = None
    pcie_max_gen: Small | None = None
    pcie_max_width: Small | None = None
    nvlink_links: Small | None = None
    ecc_enabled: bool | None = None


class XidEvent(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One critical XID error NVML reported for a GPU; ts is when the sampler read it."""

    ts: EpochS
    code: Count
    gpu_instance_id: InstanceId | None = None
    compute_instance_id: InstanceId | None = None


class GpuReading(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """One GPU in one tick: identity, an error (None when read), and each metric or None.

    Memory as NVML's v2 struct gives it: total = reserved (by the driver and firmware) + used +
    free. From a driver without the v2 struct, used includes the reserved memory and reserved is
    None. mem_free_bytes and mem_reserved_bytes are on the wire only (not in METRIC_NAMES, so not
    stored); a tick of version 1 or 2 has them None.
    """

    index: Annotated[int, msgspec.Meta(ge=0, le=1023)]
    uuid: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_UUID_CHARS)]
    name: Text
    pci_bus_id: Text | None = None
    error: Text | None = None
    util_gpu_pct: Pct | None = None
    util_mem_pct: Pct | None = None
    mem_used_bytes: Bytes | None = None
    mem_total_bytes: Bytes | None = None
    temp_c: Celsius | None = None
    power_w: Watts | None = None
    power_limit_w: Watts | None = None
    energy_j: Joules | None = None
    fan_pct: Pct | None = None
    sm_clock_mhz: Mhz | None = None
    mem_clock_mhz: Mhz | None = None
    pstate: Annotated[int, msgspec.Meta(ge=0, le=15)] | None = None
    # None: the process list could not be read this tick (unknown), [] : no process holds the GPU.
    processes: Annotated[list[GpuProcess], msgspec.Meta(max_length=1024)] | None = None
    mig_devices: Annotated[list[MigDevice], msgspec.Meta(max_length=64)] = []
    mem_free_bytes: Bytes | None = None
    mem_reserved_bytes: Bytes | None = None
    health: GpuHealth | None = None
    limits: GpuLimits | None = None
    # the XID errors NVML reported since the previous tick (at most 64 a tick; more are counted)
    xid_events: Annotated[list[XidEvent], msgspec.Meta(max_length=64)] = []

    def metric_values(self) -> tuple[float | int | None, ...]:
        """Return the metrics in METRIC_NAMES order, the health ones as stored (whole numbers)."""
        if self.health is None:
            return (*_CORE_VALUES(self), *_NO_HEALTH)
        health = (None if v is None else round(v) for v in _HEALTH_VALUES(self.health))
        return (*_CORE_VALUES(self), *health)


class Tick(msgspec.Struct, forbid_unknown_fields=True, frozen=True, gc=False):
    """All GPUs of one host at one timestamp (UTC epoch seconds), numbered per sampler run."""

    host: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_HOST_CHARS)]
    sampler_id: Annotated[str, msgspec.Meta(min_length=1, max_length=64)]
    seq: Annotated[int, msgspec.Meta(ge=0)]
    ts: EpochS
    interval_s: Annotated[float, msgspec.Meta(ge=0.1, le=86400)]
    driver_version: Text | None = None
    error: Text | None = None
    gpus: Annotated[list[GpuReading], msgspec.Meta(max_length=1024)] = []
    cuda_version: Text | None = None  # the newest CUDA the driver supports, "12.4"

    def to_frames(self) -> list[bytes]:
        """Encode as the multipart frames documented at the top of this module."""
        return [TOPIC, _VERSION_FRAME, _ENCODER.encode(self)]

    @classmethod
    def from_frames(cls, frames: list[bytes]) -> Tick:
        """Decode and validate frames; raise DecodeError with the reason for anything else."""
        if len(frames) != 3:
            raise DecodeError(f"expected 3 frames, got {len(frames)}")
        topic, version, payload = frames
        if topic != TOPIC:
            raise DecodeError(f"unknown topic {bytes(topic[:32])!r}")
        if version not in _ACCEPTED_FRAMES:
            raise DecodeError(f"unknown schema version {bytes(version[:16])!r}")
        if len(payload) > MAX_MESSAGE_BYTES:
            raise DecodeError(f"payload of {len(payload)} bytes is over {MAX_MESSAGE_BYTES}")
        try:
            return _DECODER.decode(payload)
        # ValidationError is a subclass of msgspec.DecodeError; a string that is not UTF-8 raises
        # UnicodeDecodeError instead, and must not take the writer or the web down either.
        except (msgspec.DecodeError, UnicodeDecodeError) as error:
            raise DecodeError(f"bad payload: {error}") from None


_CORE_VALUES = operator.attrgetter(*CORE_METRIC_NAMES)
_HEALTH_VALUES = operator.attrgetter(*HEALTH_METRIC_NAMES)
_NO_HEALTH = (None,) * len(HEALTH_METRIC_NAMES)
_VERSION_FRAME = str(SCHEMA_VERSION).encode()
_ACCEPTED_FRAMES = frozenset(str(version).encode() for version in ACCEPTED_VERSIONS)
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(Tick)
