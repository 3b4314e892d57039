"""Fuzz the writer's handling of each message: valid ticks are stored exactly, bad ones never.

Runs PCW_FUZZ_EXAMPLES cases (10,000 by default; more for a long run) through the real Writer
and a real SQLite file, with no socket in between: Writer.accept is what a socket's frames reach.
"""

from __future__ import annotations

import itertools
import json
import os
import sqlite3
import uuid

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.config import load_config
from common.messages import DecodeError, GpuReading, Tick
from common.metrics import CORE_METRIC_NAMES, HEALTH_METRIC_NAMES
from services.writer.main import Writer
from services.writer.store import Store

EXAMPLES = int(os.environ.get("PCW_FUZZ_EXAMPLES", "10000"))
_ts = itertools.count(1_700_000_000)

pct = st.one_of(st.none(), st.integers(0, 100))
gpu = st.builds(
    GpuReading,
    index=st.integers(0, 7),
    uuid=st.sampled_from([f"GPU-fuzz-{i}" for i in range(4)]),
    name=st.text(max_size=40),
    pci_bus_id=st.one_of(st.none(), st.text(max_size=20)),
    error=st.one_of(st.none(), st.text(max_size=30)),
    util_gpu_pct=pct,
    util_mem_pct=pct,
    mem_used_bytes=st.one_of(st.none(), st.integers(0, 1 << 40)),
    mem_total_bytes=st.one_of(st.none(), st.integers(0, 1 << 40)),
    temp_c=st.one_of(st.none(), st.integers(-100, 500)),
    power_w=st.one_of(st.none(), st.floats(0, 1e6)),
    power_limit_w=st.one_of(st.none(), st.floats(0, 1e6)),
    energy_j=st.one_of(st.none(), st.floats(0, 1e18)),
    fan_pct=pct,
    sm_clock_mhz=st.one_of(st.none(), st.integers(0, 100_000)),
    mem_clock_mhz=st.one_of(st.none(), st.integers(0, 100_000)),
    pstate=st.one_of(st.none(), st.integers(0, 15)),
)
mutation = st.sampled_from(["none", "flip", "truncate", "version", "extra frame", "garbage"])


@pytest.fixture(scope="module")
def writer(tmp_path_factory):
    db_path = tmp_path_factory.mktemp("fuzz") / "gpu_stats.db"
    config = load_config({"PCW_DB_PATH": str(db_path), "PCW_HOST_NAME": "fuzz"})
    store = Store(db_path)
    yield Writer(config, [], store)
    store.close()


COLUMNS = ", ".join(
    [f"r.{name}" for name in CORE_METRIC_NAMES] + [f"h.{name}" for name in HEALTH_METRIC_NAMES]
)


def _mutate(frames: list[bytes], how: str, data: st.DataObject) -> list[bytes]:
    topic, version, payload = frames
    if how == "flip":
        at = data.draw(st.integers(0, len(payload) - 1))
        return [topic, version, payload[:at] + bytes([payload[at] ^ 0xFF]) + payload[at + 1 :]]
    if how == "truncate":
        return [topic, version, payload[: data.draw(st.integers(0, len(payload) - 1))]]
    if how == "version":
        return [topic, b"99", payload]
    if how == "extra frame":
        return [*frames, b""]
    if how == "garbage":
        return data.draw(st.lists(st.binary(max_size=64), max_size=4))
    return frames


message = st.tuples(st.lists(gpu, max_size=4, unique_by=lambda g: g.uuid), mutation)
MESSAGES_PER_CASE = 20  # one flush per case, as the writer batches: EXAMPLES messages in all


@settings(
    max_examples=max(10, EXAMPLES // (MESSAGES_PER_CASE // 2)),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
@given(messages=st.lists(message, min_size=1, max_size=MESSAGES_PER_CASE), data=st.data())
def test_each_message_is_stored_exactly_or_not_at_all(writer, messages, data):
    sent: list[Tick] = []
    malformed_before = writer.malformed
    host = uuid.uuid4().hex  # a flipped byte cannot turn it into another case's host
    for gpus, how in messages:
        ts = float(next(_ts))
        # GPUs of this case only: a GPU's row names the host it was last seen on
        mine = [msgspec.structs.replace(g, uuid=f"{host}-{g.uuid}") for g in gpus]
        tick = Tick(host=host, sampler_id="fuzzrun", seq=int(ts), ts=ts, interval_s=1.0, gpus=mine)
        frames = _mutate(tick.to_frames(), how, data)
        try:
            decoded: Tick | None = Tick.from_frames(frames)
        except DecodeError:
            decoded = None
        # no exception may escape, whatever the bytes; a flipped byte may still decode
        assert writer.accept(frames) == (decoded is not None)
        if decoded is not None:
            sent.append(decoded)
    writer.flush(force=True)

    assert writer.malformed == malformed_before + len(messages) - len(sent)
    assert len(writer.batch) == 0, "a flush left readings behind"
    # what decoded is stored exactly; what did not decode left nothing behind
    expected = {}
    for tick in sent:
        for reading in tick.gpus:
            expected[reading.uuid, tick.ts] = (reading.error, *reading.metric_values())
    uuids = sorted(
        {gpu_uuid for gpu_uuid, _ in expected} | {f"{host}-GPU-fuzz-{i}" for i in range(4)}
    )
    conn = sqlite3.connect(f"file:{writer.store.db_path}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            f"SELECT r.gpu_uuid, r.ts, r.error, {COLUMNS} FROM readings AS r"
            " JOIN health_readings AS h USING (gpu_uuid, ts)"
            " WHERE r.gpu_uuid IN (SELECT value FROM json_each(?)) ORDER BY r.gpu_uuid, r.ts",
            (json.dumps(uuids),),
        ).fetchall()
    finally:
        conn.close()
    assert rows == sorted((gpu_uuid, ts, *values) for (gpu_uuid, ts), values in expected.items())
