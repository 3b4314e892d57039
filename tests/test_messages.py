"""The tick codec: a full round trip, and DecodeError (never anything else) for every bad input."""

from __future__ import annotations

import math

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from common.messages import (
    MAX_MESSAGE_BYTES,
    SCHEMA_VERSION,
    TOPIC,
    DecodeError,
    GpuHealth,
    GpuLimits,
    GpuReading,
    Tick,
    XidEvent,
)
from common.metrics import CORE_METRIC_NAMES, HEALTH_METRIC_NAMES, METRIC_NAMES
from tests.fuzzing import fuzz, mutate


def full_gpu(index: int = 0, **changes: object) -> GpuReading:
    """Return a GPU reading with every field set."""
    values = {
        "index": index,
        "uuid": f"GPU-8d3f2a1c-0000-4000-8000-00000000000{index}",
        "name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": f"00000000:{0x17 + index:02X}:00.0",
        "error": None,
        "util_gpu_pct": 97,
        "util_mem_pct": 44,
        "mem_used_bytes": 70_000 * 2**20,
        "mem_total_bytes": 81_559 * 2**20,
        "mem_reserved_bytes": 1_024 * 2**20,
        "mem_free_bytes": (81_559 - 70_000 - 1_024) * 2**20,
        "temp_c": 71,
        "power_w": 612.345,
        "power_limit_w": 700.0,
        "energy_j": 3_600_123.456,
        "fan_pct": 55,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "pstate": 0,
        "health": GpuHealth(
            clocks_event_reasons=0x44,
            power_violation_ns=12_000_000_000,
            thermal_violation_ns=3_500_000_000,
            ecc_corrected_volatile=3,
            ecc_uncorrected_volatile=0,
            ecc_corrected_aggregate=41,
            ecc_uncorrected_aggregate=1,
            remapped_rows_correctable=1,
            remapped_rows_uncorrectable=2,
            remap_pending=True,
            remap_failure=False,
            pcie_link_gen=5,
            pcie_link_width=8,
            pcie_tx_kb_per_s=1_250_000,
            pcie_rx_kb_per_s=9_800_000,
            pcie_replays=17,
            nvlink_links_active=18,
            nvlink_tx_kib=2**50,
            nvlink_rx_kib=2**50 + 1,
            enc_util_pct=0,
            dec_util_pct=12,
            mem_temp_c=64,
            gr_engine_active_pct=91.25,
            sm_active_pct=88.5,
            sm_occupancy_pct=43.75,
            tensor_active_pct=71.0,
            dram_active_pct=38.5,
            fp64_active_pct=0.0,
            fp32_active_pct=9.5,
            fp16_active_pct=60.125,
            gpm_pcie_tx_bytes_per_s=1_300_000_000,
            gpm_pcie_rx_bytes_per_s=9_900_000_000,
        ),
        "limits": GpuLimits(
            max_sm_clock_mhz=1980,
            max_mem_clock_mhz=2619,
            power_limit_min_w=200.0,
            power_limit_max_w=700.0,
            temp_slowdown_c=89,
            temp_shutdown_c=92,
            temp_max_operating_c=87,
            mem_temp_max_c=95,
            pcie_max_gen=5,
            pcie_max_width=16,
            nvlink_links=18,
            ecc_enabled=True,
        ),
        "xid_events": [XidEvent(ts=1_700_000_039.5, code=79, gpu_instance_id=None)],
    }
    values.update(changes)
    return GpuReading(**values)


def full_tick(**changes: object) -> Tick:
    """Return a tick of four GPUs, one of them in error, with every field set."""
    values = {
        "host": "gpu-node-07",
        "sampler_id": "0123456789abcdef",
        "seq": 41,
        "ts": 1_700_000_040.0,
        "interval_s": 60.0,
        "driver_version": "550.127.05",
        "cuda_version": "12.4",
        "error": None,
        "gpus": [
            full_gpu(0),
            full_gpu(1, fan_pct=None, power_w=None),
            full_gpu(2),
            GpuReading(index=3, uuid="GPU-lost", name="NVIDIA L40S", error="GPU is lost"),
        ],
    }
    values.update(changes)
    return Tick(**values)


def payload_of(tick_or_dict: object) -> bytes:
    """Return a msgpack payload of anything, bypassing the Tick type's checks."""
    return msgspec.msgpack.encode(tick_or_dict)


def frames_with(payload: bytes) -> list[bytes]:
    return [TOPIC, str(SCHEMA_VERSION).encode(), payload]


def tick_dict(**changes: object) -> dict:
    return {**msgspec.to_builtins(full_tick()), **changes}


def gpu_dict(**changes: object) -> dict:
    return {**msgspec.to_builtins(full_gpu()), **changes}


# -- round trip -------------------------------------------------------------------------------


def test_a_full_tick_survives_the_round_trip_unchanged():
    tick = full_tick()

    frames = tick.to_frames()
    decoded = Tick.from_frames(frames)

    assert decoded == tick
    assert frames[0] == b"pcw.tick"
    assert frames[1] == b"4"
    assert decoded.gpus[0].metric_values() == stored_values(tick.gpus[0])
    assert decoded.gpus[1].fan_pct is None and decoded.gpus[1].power_w is None
    assert decoded.gpus[3].error == "GPU is lost"


@pytest.mark.parametrize("version", [b"1", b"2", b"3"])
def test_an_older_tick_without_health_decodes_with_it_null(version):
    old = tick_dict()
    old.pop("cuda_version")
    for gpu in old["gpus"]:
        for key in ("health", "limits", "xid_events"):
            gpu.pop(key, None)

    decoded = Tick.from_frames([TOPIC, version, payload_of(old)])

    assert decoded.cuda_version is None
    assert [(g.health, g.limits, g.xid_events) for g in decoded.gpus] == [(None, None, [])] * 4
    assert decoded.gpus[0].util_gpu_pct == 97


@pytest.mark.parametrize("version", [b"1", b"2"])
def test_an_older_tick_without_free_and_reserved_memory_decodes_with_them_null(version):
    old = tick_dict()
    for gpu in old["gpus"]:
        gpu.pop("mem_free_bytes", None)
        gpu.pop("mem_reserved_bytes", None)

    decoded = Tick.from_frames([TOPIC, version, payload_of(old)])

    assert [(g.mem_free_bytes, g.mem_reserved_bytes) for g in decoded.gpus] == [(None, None)] * 4
    assert decoded.gpus[0].mem_used_bytes == 70_000 * 2**20


def test_frames_that_arrived_as_bytearrays_or_memoryviews_decode_too():
    frames = full_tick().to_frames()

    decoded = Tick.from_frames([bytearray(frames[0]), frames[1], memoryview(frames[2])])

    assert decoded == full_tick()


def stored_values(gpu: GpuReading) -> tuple:
    """The metrics as the database keeps them: the reading's own, then its health's, whole."""
    health = [getattr(gpu.health, name) for name in HEALTH_METRIC_NAMES]
    return (
        *(getattr(gpu, name) for name in CORE_METRIC_NAMES),
        *(None if value is None else round(value) for value in health),
    )


def test_metric_values_follow_the_metric_list():
    gpu = full_gpu()

    assert gpu.metric_values() == stored_values(gpu)
    assert len(gpu.metric_values()) == len(METRIC_NAMES)
    assert gpu.health is not None and gpu.health.gr_engine_active_pct is not None


def test_a_reading_without_health_has_its_health_metrics_null():
    gpu = msgspec.structs.replace(full_gpu(), health=None)

    assert gpu.metric_values()[len(CORE_METRIC_NAMES) :] == (None,) * len(HEALTH_METRIC_NAMES)


# -- rejection --------------------------------------------------------------------------------


def reject(frames: list[bytes]) -> str:
    """Decode frames that must be rejected; return the reason."""
    with pytest.raises(DecodeError) as caught:
        Tick.from_frames(frames)
    assert str(caught.value)
    return str(caught.value)


@pytest.mark.parametrize("count", [0, 1, 2, 4])
def test_wrong_frame_count(count):
    frames = [*full_tick().to_frames(), b"extra"][:count]

    assert f"expected 3 frames, got {count}" in reject(frames)


@pytest.mark.parametrize("topic", [b"pcw.tock", b"", b"pcw.tick.v2", b"PCW.TICK"])
def test_wrong_topic(topic):
    frames = full_tick().to_frames()

    assert "unknown topic" in reject([topic, *frames[1:]])


@pytest.mark.parametrize("version", [b"5", b"0", b"", b"01", b"1.0", b"\xff"])
def test_unknown_schema_version(version):
    _, _, payload = full_tick().to_frames()

    assert "unknown schema version" in reject([TOPIC, version, payload])


def test_oversize_payload_is_refused_before_decoding():
    payload = b"\x90" + b"\x00" * MAX_MESSAGE_BYTES

    assert f"over {MAX_MESSAGE_BYTES}" in reject(frames_with(payload))


def test_a_payload_just_under_the_limit_is_still_considered():
    # a huge but well-formed tick up to the limit is decoded, not refused for its size
    many = [full_gpu(i % 1000, uuid=f"GPU-{i}") for i in range(1000)]
    tick = full_tick(gpus=many)

    assert len(tick.to_frames()[2]) < MAX_MESSAGE_BYTES
    assert len(Tick.from_frames(tick.to_frames()).gpus) == 1000


@pytest.mark.parametrize("cut", [1, 2, 10, 100])
def test_truncated_payload(cut):
    _, _, payload = full_tick().to_frames()

    assert "bad payload" in reject(frames_with(payload[:-cut]))


def test_empty_payload():
    assert "bad payload" in reject(frames_with(b""))


def test_trailing_bytes_after_the_payload():
    _, _, payload = full_tick().to_frames()

    assert "bad payload" in reject(frames_with(payload + b"\x00"))


@pytest.mark.parametrize(
    ("changes", "where"),
    [
        ({"host": 7}, "$.host"),
        ({"seq": "41"}, "$.seq"),
        ({"ts": "1700000040"}, "$.ts"),
        ({"gpus": {"0": None}}, "$.gpus"),
        ({"gpus": [gpu_dict(util_gpu_pct="97")]}, "util_gpu_pct"),
        ({"gpus": [gpu_dict(util_gpu_pct=True)]}, "util_gpu_pct"),
        ({"gpus": [gpu_dict(mem_used_bytes=1.5)]}, "mem_used_bytes"),
        ({"gpus": [gpu_dict(power_w="612")]}, "power_w"),
        ({"gpus": [gpu_dict(uuid=None)]}, "uuid"),
        ({"gpus": [[1, 2, 3]]}, "$.gpus[0]"),
    ],
)
def test_wrong_types(changes, where):
    reason = reject(frames_with(payload_of(tick_dict(**changes))))

    assert where in reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("util_gpu_pct", 101),
        ("util_mem_pct", -1),
        ("fan_pct", 101),
        ("mem_used_bytes", -1),
        ("mem_total_bytes", -4096),
        ("pstate", 16),
        ("pstate", -1),
        ("power_w", math.nan),
        ("power_w", -0.5),
        ("power_w", math.inf),
        ("energy_j", math.nan),
        ("temp_c", 1000),
        ("sm_clock_mhz", -1),
        ("index", -1),
        ("uuid", ""),
        ("name", "x" * 257),
    ],
)
def test_out_of_range_gpu_values(field, value):
    reason = reject(frames_with(payload_of(tick_dict(gpus=[gpu_dict(**{field: value})]))))

    assert f"$.gpus[0].{field}" in reason


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("ts", math.nan),
        ("ts", 0.0),
        ("ts", -1.0),
        ("ts", 1e12),
        ("interval_s", 0.01),
        ("seq", -1),
        ("host", ""),
        ("sampler_id", ""),
    ],
)
def test_out_of_range_tick_values(field, value):
    reason = reject(frames_with(payload_of(tick_dict(**{field: value}))))

    assert f"$.{field}" in reason


def test_unknown_field_on_the_tick():
    assert "unknown_field" in reject(frames_with(payload_of(tick_dict(unknown_field=1))))


def test_unknown_field_on_a_gpu():
    gpus = [gpu_dict(power_mw=612_345)]

    assert "power_mw" in reject(frames_with(payload_of(tick_dict(gpus=gpus))))


def test_missing_required_field():
    data = tick_dict()
    del data["host"]

    assert "host" in reject(frames_with(payload_of(data)))


def test_a_pickle_payload_is_not_unpickled():
    import pickle

    payload = pickle.dumps(msgspec.to_builtins(full_tick()))

    assert "bad payload" in reject(frames_with(payload))


# -- property tests ---------------------------------------------------------------------------


def decodes_or_rejects(frames: list[bytes]) -> None:
    """Assert that decoding gives a valid Tick or raises DecodeError, and nothing else."""
    try:
        tick = Tick.from_frames(frames)
    except DecodeError as error:
        assert str(error)
        return
    # whatever decodes is a tick the writer can store as it is: it encodes to the same bytes
    assert Tick.from_frames(tick.to_frames()) == tick


@fuzz()
@given(payload=st.binary(max_size=4096))
def test_random_payload_bytes_only_ever_raise_decode_error(payload):
    decodes_or_rejects(frames_with(payload))


VALID_PAYLOAD = full_tick().to_frames()[2]


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "set"]),
        st.integers(0, len(VALID_PAYLOAD) + 8),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=8,
)


MUTATED_PAYLOADS = MUTATIONS.map(lambda mutations: mutate(VALID_PAYLOAD, mutations))


@fuzz(0.5)
@given(payload=MUTATED_PAYLOADS)
def test_mutated_valid_encodings_only_ever_raise_decode_error(payload):
    decodes_or_rejects(frames_with(payload))


@fuzz(0.25)
@given(
    frames=st.lists(
        st.binary(max_size=64)
        | st.sampled_from([TOPIC, b"1", VALID_PAYLOAD])
        | st.integers(0, len(VALID_PAYLOAD)).map(lambda cut: VALID_PAYLOAD[:cut]),
        max_size=5,
    )
)
def test_random_frame_lists_only_ever_raise_decode_error(frames):
    decodes_or_rejects(frames)


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=12)
    | st.binary(max_size=8)
)
GPU_FIELDS = list(msgspec.to_builtins(full_gpu()))
TICK_FIELDS = [name for name in msgspec.to_builtins(full_tick()) if name != "gpus"]
WRONG_GPUS = st.lists(
    st.fixed_dictionaries({}, optional={name: LEAVES for name in GPU_FIELDS})
    | st.lists(LEAVES, max_size=3)
    | LEAVES,
    max_size=3,
)
WRONG_TICKS = st.fixed_dictionaries(
    {}, optional={**{name: LEAVES for name in TICK_FIELDS}, "gpus": WRONG_GPUS | LEAVES}
)


@fuzz(0.25)
@given(data=WRONG_TICKS | st.lists(LEAVES, max_size=4) | LEAVES)
def test_well_formed_msgpack_of_the_wrong_shape_only_ever_raises_decode_error(data):
    decodes_or_rejects(frames_with(payload_of(data)))


@fuzz(0.25)
@given(
    field=st.sampled_from(CORE_METRIC_NAMES),
    value=st.one_of(st.integers(-(2**70), 2**70), st.floats(), st.text(max_size=5), st.none()),
)
def test_any_metric_value_decodes_in_range_or_is_rejected(field, value):
    # msgpack cannot carry ints past 64 bits; those are a type error for the encoder, not us
    try:
        payload = payload_of(tick_dict(gpus=[gpu_dict(**{field: value})]))
    except OverflowError:
        return
    try:
        tick = Tick.from_frames(frames_with(payload))
    except DecodeError:
        return
    decoded = getattr(tick.gpus[0], field)
    low, high = VALID_RANGES[field]
    assert decoded is None or (math.isfinite(decoded) and low <= decoded <= high)
    # accepted values arrive as sent (an integer in a float field as the nearest float)
    assert decoded == (float(value) if isinstance(decoded, float) else value)


# What a reader of the database may rely on for each metric (units in the names).
VALID_RANGES = {
    "util_gpu_pct": (0, 100),
    "util_mem_pct": (0, 100),
    "mem_used_bytes": (0, 2**60),
    "mem_total_bytes": (0, 2**60),
    "temp_c": (-100, 500),
    "power_w": (0, 1e6),
    "power_limit_w": (0, 1e6),
    "energy_j": (0, 1e18),
    "fan_pct": (0, 100),
    "sm_clock_mhz": (0, 100_000),
    "mem_clock_mhz": (0, 100_000),
    "pstate": (0, 15),
}


def test_valid_ranges_cover_every_metric_of_the_reading_itself():
    assert set(VALID_RANGES) == set(CORE_METRIC_NAMES)
