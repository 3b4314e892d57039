"""The writer over real ZeroMQ sockets and a real SQLite file, on injected clocks."""

from __future__ import annotations

import logging
import re
import sqlite3
import time
import tracemalloc
from pathlib import Path

import msgspec
import pytest
import zmq

from common.config import load_config
from common.messages import STORING_TOPIC, TOPIC, GpuHealth, GpuReading, Tick
from common.metrics import CORE_METRIC_NAMES, HEALTH_METRIC_NAMES
from common.status import read_status
from services.web.health import HealthInputs, assess
from services.writer.batch import PendingBatch, held_bytes
from services.writer.main import MAX_BATCH_AGE_S, MAX_BATCH_ROWS, RETRY_BACKOFF_S, Writer
from services.writer.sources import open_source
from services.writer.store import Store, connect, file_bytes
from tests.stack import free_port

HOUR_S = 3600.0
DAY_S = 86400.0
ALIGNED_HOUR = 1_699_999_200.0  # 2023-11-14 22:00:00 UTC
DELIVERY_TIMEOUT_S = 10.0
LOCK_WAIT_MS = 50  # how long a write waits on a locked file in these tests (5 s in production)


# -- building ticks -------------------------------------------------------------------------------


def gpu(index: int, **changes: object) -> GpuReading:
    values = {
        "index": index,
        "uuid": f"GPU-test-{index:04d}",
        "name": "NVIDIA H100 80GB HBM3",
        "pci_bus_id": f"00000000:{index:02X}:00.0",
        "util_gpu_pct": 50 + index % 50,
        "util_mem_pct": 20,
        "mem_used_bytes": 1 << 30,
        "mem_total_bytes": 80 << 30,
        "temp_c": 60,
        "power_w": 300.5,
        "power_limit_w": 700.0,
        "energy_j": 123_456.789,
        "fan_pct": None,
        "sm_clock_mhz": 1980,
        "mem_clock_mhz": 2619,
        "pstate": 0,
    }
    values.update(changes)
    return GpuReading(**values)


def make_tick(seq: int, ts: float, gpus: int = 2, sampler_id: str = "run-a") -> Tick:
    return Tick(
        host="testhost",
        sampler_id=sampler_id,
        seq=seq,
        ts=ts,
        interval_s=1.0,
        driver_version="550.127.05",
        gpus=[gpu(i, util_gpu_pct=seq % 101) for i in range(gpus)],
    )


def ticks(count: int, first_ts: float, gpus: int = 2, first_seq: int = 0) -> list[Tick]:
    return [make_tick(first_seq + k, first_ts + k, gpus) for k in range(count)]


# -- the writer under test, with a publisher in place of the sampler -----------------------------


class Rig:
    """A Writer subscribed to a real publisher socket, storing into a real file on tmp_path."""

    def __init__(self, tmp_path: Path, clock, context: zmq.Context, **settings: str) -> None:
        endpoint = f"tcp://127.0.0.1:{free_port()}"
        self.db_path = tmp_path / "db" / "gpu_stats.db"
        self.clock = clock
        self.config = load_config(
            {
                "PCW_DB_PATH": str(self.db_path),
                "PCW_PUB_ENDPOINT": endpoint,
                "PCW_HOST_NAME": "testhost",
                **settings,
            }
        )
        # XPUB is a PUB that also says when a subscriber has joined: no slow-joiner guesswork
        self.publisher = context.socket(zmq.XPUB)
        self.publisher.setsockopt(zmq.LINGER, 0)
        self.publisher.setsockopt(zmq.SNDHWM, 0)
        self.publisher.bind(endpoint)
        self.source = open_source(context, endpoint)
        self.store = Store(self.db_path, busy_timeout_ms=LOCK_WAIT_MS)
        self.writer = Writer(
            self.config, [self.source], self.store, wall=clock.wall, monotonic=clock.monotonic
        )
        assert self.publisher.poll(int(DELIVERY_TIMEOUT_S * 1000)), "the writer never subscribed"
        # the ticks' topic, and the one that tells a sampler a writer is here (either first)
        assert self.publisher.poll(int(DELIVERY_TIMEOUT_S * 1000))
        first = self.publisher.recv()
        assert self.publisher.poll(int(DELIVERY_TIMEOUT_S * 1000))
        assert {first, self.publisher.recv()} == {b"\x01" + TOPIC, b"\x01" + STORING_TOPIC}

    def close(self) -> None:
        self.store.close()
        self.source.close()
        self.publisher.close(linger=0)

    def arrived(self) -> int:
        """Return how many messages the writer has taken off its socket so far."""
        batch = self.writer.batch
        return len(batch) + batch.dropped_ticks + self.writer.malformed + self.writer.stored_ticks

    def publish(self, *messages: Tick | list[bytes]) -> None:
        """Send messages as the sampler does, and let the writer take every one of them."""
        expected = self.arrived() + len(messages)
        for message in messages:
            frames = message.to_frames() if isinstance(message, Tick) else message
            self.publisher.send_multipart(frames)
        deadline = time.monotonic() + DELIVERY_TIMEOUT_S
        while self.arrived() < expected:
            assert time.monotonic() < deadline, f"{expected - self.arrived()} never arrived"
            self.writer.receive(0.05)
        assert self.arrived() == expected

    def rows(self, sql: str = "SELECT gpu_uuid, ts FROM readings ORDER BY gpu_uuid, ts") -> list:
        """Query the file as a user would, through the documented view."""
        if not self.db_path.exists():
            return []
        conn = sqlite3.connect(f"file:{self.db_path}?mode=ro", uri=True)
        try:
            return conn.execute(sql).fetchall()
        finally:
            conn.close()

    def lock(self) -> sqlite3.Connection:
        """Hold the file's write lock from another connection, as a long backup or query would."""
        locker = sqlite3.connect(self.db_path, isolation_level=None)
        locker.execute("BEGIN EXCLUSIVE")
        return locker


@pytest.fixture
def rig(tmp_path, clock, zmq_context):
    made = []

    def make(**settings: str) -> Rig:
        made.append(Rig(tmp_path / f"rig{len(made)}", clock, zmq_context, **settings))
        return made[-1]

    yield make
    for each in made:
        each.close()


def expected_rows(sent: list[Tick]) -> list[tuple[str, float]]:
    return sorted((g.uuid, t.ts) for t in sent for g in t.gpus)


# -- PendingBatch ---------------------------------------------------------------------------------


def test_batch_is_due_when_full():
    batch = PendingBatch(max_rows=10, max_age_s=60.0, max_bytes=1 << 30)
    for k, tick in enumerate(ticks(4, 1_700_000_000.0, gpus=2)):
        batch.add(tick, now_s=k * 0.01)
    assert batch.rows == 8
    assert not batch.is_due(now_s=0.1)

    batch.add(make_tick(4, 1_700_000_004.0, gpus=2), now_s=0.1)

    assert batch.rows == 10
    assert batch.is_due(now_s=0.1)


def test_batch_is_due_when_its_oldest_tick_has_waited_long_enough():
    batch = PendingBatch(max_rows=1000, max_age_s=0.5, max_bytes=1 << 30)
    assert batch.due_at() is None and not batch.is_due(now_s=99.0)

    batch.add(make_tick(0, 1_700_000_000.0), now_s=10.0)
    batch.add(make_tick(1, 1_700_000_001.0), now_s=10.4)

    assert batch.due_at() == 10.5
    assert not batch.is_due(now_s=10.49)
    assert batch.is_due(now_s=10.5)


def test_batch_bound_in_bytes_drops_the_oldest_ticks_and_counts_them():
    sent = ticks(5, 1_700_000_000.0, gpus=2)
    sizes = [held_bytes(tick.to_frames()) for tick in sent]
    batch = PendingBatch(max_rows=1000, max_age_s=0.5, max_bytes=sum(sizes[2:]))

    for tick, size in zip(sent, sizes, strict=True):
        batch.add(tick, now_s=0.0, size_bytes=size)

    assert batch.dropped_ticks == 2
    assert len(batch) == 3
    assert batch.rows == 6
    assert batch.bytes == sum(sizes[2:]) <= batch.max_bytes
    assert batch.peek() == sent[2:]
    batch.commit(3)
    assert (len(batch), batch.rows, batch.bytes) == (0, 0, 0)


def test_held_bytes_covers_what_a_decoded_tick_takes_in_memory():
    frames = make_tick(0, 1_700_000_000.0, gpus=64).to_frames()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        held = [Tick.from_frames(frames) for _ in range(50)]
        per_tick = (tracemalloc.get_traced_memory()[0] - before) / len(held)
    finally:
        tracemalloc.stop()
    assert per_tick <= held_bytes(frames) <= 1.5 * per_tick


def test_batch_peek_takes_whole_ticks_up_to_the_row_limit_and_commit_forgets_them():
    batch = PendingBatch(max_rows=5, max_age_s=0.5, max_bytes=1 << 30)
    sent = ticks(4, 1_700_000_000.0, gpus=2)
    for tick in sent:
        batch.add(tick, now_s=0.0)

    taken = batch.peek()
    batch.commit(len(taken))

    assert taken == sent[:2]  # a third tick would make 6 rows
    assert batch.peek() == sent[2:]
    assert (len(batch), batch.rows) == (2, 4)
    assert batch.peek(max_rows=1) == [sent[2]]  # at least one tick, even past the limit


def test_batch_holds_at_most_one_batch_decoded_and_the_rest_as_messages():
    batch = PendingBatch(max_rows=10, max_age_s=0.5, max_bytes=1 << 30)
    sent = ticks(12, 1_700_000_000.0, gpus=2)  # 24 readings: more than two batches
    decoded_seen = []
    for tick in sent:
        frames = tick.to_frames()
        batch.add(tick, now_s=0.0, size_bytes=held_bytes(frames), frames=frames)
        decoded_seen.append(batch.decoded_rows)
    assert max(decoded_seen) == batch.max_rows  # one batch decoded, the other 14 readings not
    assert batch.rows == 24
    assert batch.bytes == sum(held_bytes(tick.to_frames()) for tick in sent)  # as if decoded

    stored: list[Tick] = []
    while len(batch):
        taken = batch.peek()
        assert batch.decoded_rows <= batch.max_rows
        stored += taken
        batch.commit(len(taken))
        # a tick arriving now goes behind the held messages, and is kept as one too
        assert batch.decoded_rows <= batch.max_rows
    assert stored == sent  # every tick, in order, decoded again exactly as sent
    assert (batch.rows, batch.bytes, batch.decoded_rows) == (0, 0, 0)


def test_a_burst_of_several_batches_is_stored_whole_with_one_batch_decoded_at_a_time(rig, clock):
    r = rig()
    per_batch = MAX_BATCH_ROWS // 64
    sent = ticks(3 * per_batch + 5, 1_700_000_000.0, gpus=64)  # over three batches' readings
    locker = r.lock()  # held first, as through an outage: every tick arrives before a flush
    r.publish(*sent)
    assert r.writer.batch.rows == 64 * len(sent)
    assert r.writer.batch.decoded_rows <= MAX_BATCH_ROWS
    clock.advance(MAX_BATCH_AGE_S)
    assert not r.writer.flush()
    assert r.writer.batch.decoded_rows <= MAX_BATCH_ROWS

    locker.execute("ROLLBACK")
    locker.close()
    clock.advance(RETRY_BACKOFF_S[0])
    flushes = 0
    while r.writer.flush():
        flushes += 1
        assert r.writer.batch.decoded_rows <= MAX_BATCH_ROWS
    assert flushes == 4  # one batch at a time
    assert r.rows() == expected_rows(sent)
    assert r.writer.status().dropped_ticks == 0


# -- flushing -----------------------------------------------------------------------------------


def test_ticks_are_stored_once_the_batch_is_old_enough(rig, clock):
    r = rig()
    sent = ticks(3, 1_700_000_000.0)
    r.publish(*sent)

    assert not r.writer.flush()
    clock.advance(MAX_BATCH_AGE_S - 0.01)
    assert not r.writer.flush()
    assert r.rows() == []

    clock.advance(0.01)
    assert r.writer.flush()

    assert r.rows() == expected_rows(sent)
    status = r.writer.status()
    assert (status.stored_ticks, status.stored_readings, status.buffered_ticks) == (3, 6, 0)
    assert status.state == "ok"


HEALTH = GpuHealth(
    enc_util_pct=3, dec_util_pct=4, mem_temp_c=71, pcie_tx_kb_per_s=120_000,
    pcie_rx_kb_per_s=950_000, gr_engine_active_pct=87.4, sm_active_pct=80.5,
    sm_occupancy_pct=41.5, tensor_active_pct=63.2, dram_active_pct=35.5, fp64_active_pct=0.2,
    fp32_active_pct=12.5, fp16_active_pct=55.5,
)  # fmt: skip


def test_every_metric_is_stored_as_sent(rig, clock):
    r = rig()
    tick = make_tick(0, 1_700_000_000.0, gpus=1)
    tick = msgspec.structs.replace(tick, gpus=[gpu(0, health=HEALTH)])
    r.publish(tick)
    clock.advance(MAX_BATCH_AGE_S)
    r.writer.flush()

    core = ", ".join(f"r.{name}" for name in CORE_METRIC_NAMES)
    health = ", ".join(f"h.{name}" for name in HEALTH_METRIC_NAMES)
    stored = r.rows(
        f"SELECT r.host, r.gpu_index, r.gpu_uuid, r.gpu_name, r.ts, {core}, {health}"
        " FROM readings AS r JOIN health_readings AS h USING (gpu_uuid, ts)"
    )

    reading = tick.gpus[0]
    assert stored == [
        ("testhost", 0, reading.uuid, reading.name, tick.ts, *reading.metric_values())
    ]
    # the GPM activities as whole percents, half to even: 87.4 -> 87, 80.5 -> 80, 35.5 -> 36
    assert stored[0][-9:] == (3, 4, 71, 120_000, 950_000, 87, 80, 63, 36)


def test_a_full_batch_is_stored_at_once_without_waiting(rig):
    r = rig()
    gpus = 8
    count = MAX_BATCH_ROWS // gpus
    sent = ticks(count, 1_700_000_000.0, gpus=gpus)

    r.publish(*sent[:-1])
    assert not r.writer.flush()  # one tick short of a full batch, and no time has passed

    r.publish(sent[-1])
    assert r.writer.flush()

    assert len(r.rows()) == MAX_BATCH_ROWS
    assert r.writer.status().buffered_ticks == 0


def test_the_same_tick_twice_is_stored_once(rig, clock):
    r = rig()
    tick = make_tick(0, 1_700_000_000.0, gpus=3)
    r.publish(tick, tick)
    clock.advance(MAX_BATCH_AGE_S)
    assert r.writer.flush()

    r.publish(tick)  # again, in a later batch
    clock.advance(MAX_BATCH_AGE_S)
    assert r.writer.flush()

    assert r.rows() == expected_rows([tick])
    assert r.rows("SELECT count(*) FROM gpus") == [(3,)]


def test_store_write_is_idempotent(tmp_path):
    store = Store(tmp_path / "x.db")
    sent = ticks(5, 1_700_000_000.0, gpus=2)

    store.write(sent)
    store.write(sent[2:])
    store.close()

    conn = sqlite3.connect(tmp_path / "x.db")
    assert conn.execute(
        "SELECT count(*), count(DISTINCT gpu_id || '/' || ts) FROM samples"
    ).fetchone() == (10, 10)
    conn.close()


def cache_size(conn: sqlite3.Connection) -> int:
    return conn.execute("PRAGMA cache_size").fetchone()[0]


def test_the_writers_connection_holds_the_page_cache_its_setting_gives(tmp_path):
    defaults = load_config({})
    conn = connect(tmp_path / "default.db")
    assert cache_size(conn) == -(defaults.writer_cache_bytes // 1024) == -4096  # 4 MiB in KiB
    conn.close()
    config = load_config({"PCW_WRITER_CACHE_BYTES": str(3 * 1024 * 1024 + 1000)})
    store = Store(tmp_path / "x.db", cache_bytes=config.writer_cache_bytes)
    store.open()
    assert cache_size(store._connection()) == -(config.writer_cache_bytes // 1024) == -3072
    (tmp_path / "x.db").unlink()  # replaced under the writer: the connection opened anew
    store.write(ticks(1, 1_700_000_000.0))
    assert cache_size(store._connection()) == -3072
    store.close()


# -- malformed messages -------------------------------------------------------------------------


def test_malformed_messages_are_counted_dropped_and_later_ticks_stored(rig, clock, caplog):
    r = rig()
    good = make_tick(0, 1_700_000_000.0)
    _, version, payload = good.to_frames()
    malformed = [
        [TOPIC, version, b"not msgpack at all"],
        [TOPIC, version, payload[:-3]],
        [TOPIC, b"99", payload],
        [TOPIC + b".other", version, payload],  # matches the subscription prefix, still wrong
        [TOPIC],
        [TOPIC, version, b"\x81\xa2\x00\x80"],  # a key that is not UTF-8
    ]
    caplog.set_level(logging.WARNING)

    r.publish(*malformed)
    later = ticks(2, 1_700_000_001.0, first_seq=1)
    r.publish(good, *later)
    clock.advance(MAX_BATCH_AGE_S)
    r.writer.flush()

    assert r.writer.status().malformed_messages == len(malformed)
    assert r.rows() == expected_rows([good, *later])
    warnings = [rec.getMessage() for rec in caplog.records if "malformed" in rec.getMessage()]
    assert len(warnings) == 1  # a flood is logged as a count, not line by line
    assert "dropped 1 malformed" in warnings[0]


def test_malformed_messages_are_logged_as_a_count_every_ten_seconds(rig, clock, caplog):
    r = rig()
    caplog.set_level(logging.WARNING)
    junk = [TOPIC, b"1", b"junk"]

    r.publish(junk)
    r.publish(*[junk] * 20)
    clock.advance(10.0)
    r.publish(junk)

    warnings = [rec.getMessage() for rec in caplog.records if "malformed" in rec.getMessage()]
    assert [re.search(r"dropped (\d+)", w).group(1) for w in warnings] == ["1", "21"]
    assert r.writer.status().malformed_messages == 22


# -- a failing database ---------------------------------------------------------------------------


def test_a_locked_database_keeps_the_ticks_backs_off_and_stores_them_later(rig, clock, caplog):
    r = rig()
    first = ticks(2, 1_700_000_000.0)
    r.publish(*first)
    clock.advance(MAX_BATCH_AGE_S)
    assert r.writer.flush()
    locker = r.lock()
    caplog.set_level(logging.INFO)

    held = ticks(3, 1_700_000_002.0, first_seq=2)
    r.publish(*held)
    clock.advance(MAX_BATCH_AGE_S)
    started = clock.monotonic()
    assert not r.writer.flush()

    status = r.writer.status()
    assert status.state == "degraded"
    assert "database is locked" in status.last_error
    assert status.buffered_ticks == 3
    on_disk = read_status(r.db_path)
    assert on_disk is not None and on_disk.state == "degraded"  # what /healthz reads

    # more ticks arrive while the file is locked: all are held
    more = ticks(2, 1_700_000_005.0, first_seq=5)
    r.publish(*more)

    # try every 0.1 s for 10 s: attempts only when each backoff has passed
    attempts = [0.0]
    last_error_ts = status.last_error_ts
    for _ in range(100):
        clock.advance(0.1)
        assert not r.writer.flush()
        if r.writer.status().last_error_ts != last_error_ts:
            last_error_ts = r.writer.status().last_error_ts
            attempts.append(clock.monotonic() - started)
    waited, expected = 0.0, [0.0]
    for delay_s in RETRY_BACKOFF_S:
        waited += delay_s
        if waited <= 10.0 + 1e-9:
            expected.append(waited)
    assert attempts == pytest.approx(expected, abs=0.1 + 1e-6)
    assert r.writer.status().buffered_ticks == 5
    assert len([rec for rec in caplog.records if "database is locked" in rec.getMessage()]) == 1

    locker.execute("ROLLBACK")
    locker.close()
    clock.advance(RETRY_BACKOFF_S[-1])
    while r.writer.flush():
        pass

    assert r.rows() == expected_rows([*first, *held, *more])
    status = r.writer.status()
    assert (status.state, status.last_error, status.buffered_ticks) == ("ok", None, 0)
    assert read_status(r.db_path).state == "ok"
    assert any("database writable again" in rec.getMessage() for rec in caplog.records)


def test_while_the_database_is_down_the_oldest_ticks_go_first_and_are_counted(rig, clock):
    r = rig()
    sent = ticks(7, 1_700_000_000.0)
    four_ticks = 4 * held_bytes(sent[0].to_frames())
    r.writer.batch = PendingBatch(MAX_BATCH_ROWS, MAX_BATCH_AGE_S, max_bytes=four_ticks)
    locker = r.lock()

    r.publish(*sent)
    clock.advance(MAX_BATCH_AGE_S)
    assert not r.writer.flush()
    assert r.writer.status().dropped_ticks == 3

    locker.execute("ROLLBACK")
    locker.close()
    clock.advance(RETRY_BACKOFF_S[0])
    assert r.writer.flush()

    assert r.rows() == expected_rows(sent[3:])
    assert r.writer.status().dropped_ticks == 3


def test_a_failing_database_holds_at_most_the_buffer_bytes_and_counts_what_it_drops(rig, clock):
    limit_bytes = 1 << 20  # the smallest PCW_WRITER_BUFFER_BYTES allowed
    r = rig(PCW_WRITER_BUFFER_BYTES=str(limit_bytes))
    locker = r.lock()
    sent = ticks(60, 1_700_000_000.0, gpus=64)  # ~100 KB each held: six times the bound

    r.publish(*sent)
    clock.advance(MAX_BATCH_AGE_S)
    assert not r.writer.flush()

    status = r.writer.status()
    assert status.state == "degraded"
    assert 0 < status.buffered_bytes <= limit_bytes == status.buffer_limit_bytes
    assert status.dropped_ticks == len(sent) - status.buffered_ticks > 0
    problems = assess(
        HealthInputs(
            now_s=clock.wall(),
            interval_s=1.0,
            last_tick_ts=clock.wall(),
            last_tick_source="live",
            writer=status,
            db_bytes=1,
            db_problem=None,
            malformed_messages=0,
            websocket_clients=0,
            internal_errors=0,
        )
    )["problems"]
    assert any(
        f"dropped the {status.dropped_ticks} oldest" in line and "PCW_WRITER_BUFFER_BYTES" in line
        for line in problems
    ), problems

    locker.execute("ROLLBACK")
    locker.close()
    clock.advance(RETRY_BACKOFF_S[0])
    while r.writer.flush():
        pass
    kept = sent[status.dropped_ticks :]
    assert r.rows() == expected_rows(kept)  # the newest, in full
    assert (r.writer.status().buffered_ticks, r.writer.status().buffered_bytes) == (0, 0)


# -- stopping -----------------------------------------------------------------------------------


def test_a_burst_larger_than_the_buffer_is_stored_whole_while_the_database_works(rig, clock):
    r = rig(PCW_WRITER_BUFFER_BYTES=str(1 << 20))  # the smallest bound allowed
    sent = ticks(60, 1_700_000_000.0, gpus=64)  # ~100 KB each held: six times the bound
    for tick in sent:  # all on the socket before the writer takes any
        r.publisher.send_multipart(tick.to_frames())

    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while r.writer.stored_ticks < len(sent) and time.monotonic() < deadline:
        r.writer.step()
        clock.advance(0.1)  # a last batch smaller than the byte bound is stored by its age

    status = r.writer.status()
    assert (status.dropped_ticks, status.stored_ticks) == (0, len(sent))
    assert r.rows() == expected_rows(sent)


def test_shutdown_stores_everything_held_and_what_has_just_arrived(rig, caplog):
    r = rig()
    held = ticks(4, 1_700_000_000.0)
    r.publish(*held)
    assert not r.writer.flush()  # not due yet
    last = make_tick(4, 1_700_000_004.0)
    r.publisher.send_multipart(last.to_frames())
    assert r.source.subscriber.poll(int(DELIVERY_TIMEOUT_S * 1000))  # arrived, not yet taken
    caplog.set_level(logging.INFO)

    r.writer.shutdown()

    assert r.rows() == expected_rows([*held, last])
    status = read_status(r.db_path)
    assert (status.state, status.buffered_ticks, status.stored_ticks) == ("ok", 0, 5)
    assert any("writer stopped: 5 ticks, 10 readings" in rec.getMessage() for rec in caplog.records)


def test_a_step_receives_and_flushes_on_its_own(rig, clock):
    r = rig()
    sent = ticks(2, 1_700_000_000.0)
    for tick in sent:
        r.publisher.send_multipart(tick.to_frames())
    clock.advance(MAX_BATCH_AGE_S)

    deadline = time.monotonic() + DELIVERY_TIMEOUT_S
    while r.rows() != expected_rows(sent) and time.monotonic() < deadline:
        clock.advance(MAX_BATCH_AGE_S)
        r.writer.step()

    assert r.rows() == expected_rows(sent)


# -- purge and VACUUM -----------------------------------------------------------------------------


def purge_logs(caplog) -> list[str]:
    return [rec.getMessage() for rec in caplog.records if rec.getMessage().startswith("purged")]


def test_purge_and_vacuum_run_at_the_top_of_the_hour_and_keep_the_retention(rig, clock, caplog):
    clock.wall_s = ALIGNED_HOUR + 100.0
    r = rig(PCW_RETENTION_DAYS="30")
    purge_at = ALIGNED_HOUR + HOUR_S
    cutoff = purge_at - 30 * DAY_S
    store = r.writer.store
    # two days of minutely readings long past the retention, of a GPU that is gone since
    old = [
        Tick(
            host="testhost",
            sampler_id="old-run",
            seq=k,
            ts=cutoff - 3 * DAY_S + 60 * k,
            interval_s=60.0,
            gpus=[gpu(i) for i in range(3)] + [gpu(9, uuid="GPU-retired")],
        )
        for k in range(2 * 1440)
    ]
    store.write(old)
    edge = [make_tick(0, cutoff - 1.0, gpus=3), make_tick(1, cutoff + 1.0, gpus=3)]
    recent = ticks(100, purge_at - 2 * DAY_S, gpus=3, first_seq=2)
    store.write([*edge, *recent])
    store.close()
    bytes_before = file_bytes(r.db_path)
    caplog.set_level(logging.INFO)

    ran_at = []

    def run_for(seconds: float) -> None:
        for _ in range(int(seconds / 50)):
            clock.advance(50.0)
            if r.writer.maintain():
                ran_at.append(clock.wall())

    run_for(HOUR_S)
    assert ran_at == [purge_at]
    # what is left: exactly the readings younger than the retention
    assert r.rows() == expected_rows([edge[1], *recent])
    assert r.rows("SELECT count(*) FROM gpus WHERE gpu_uuid = 'GPU-retired'") == [(0,)]
    bytes_after = file_bytes(r.db_path)
    assert bytes_after < bytes_before / 2
    assert r.writer.status().last_maintenance_ts == purge_at

    (line,) = purge_logs(caplog)
    match = re.fullmatch(
        r"purged (\d+) readings older than 30 days in ([\d.]+) s; file (\d+) -> (\d+) bytes"
        r" \(incremental vacuum\)",
        line,
    )
    assert match, line
    deleted, seconds, logged_before, logged_after = match.groups()
    assert int(deleted) == len(old) * 4 + 3
    assert 0 <= float(seconds) < 30
    assert (int(logged_before), int(logged_after)) == (bytes_before, bytes_after)

    # and then once an hour, each time with the cutoff an hour later
    run_for(2 * HOUR_S)
    assert ran_at == [purge_at, purge_at + HOUR_S, purge_at + 2 * HOUR_S]
    assert r.rows() == expected_rows(recent)
    assert [line.split(" readings")[0] for line in purge_logs(caplog)[1:]] == [
        "purged 3",
        "purged 0",
    ]
    assert file_bytes(r.db_path) <= bytes_after


def test_maintenance_follows_its_own_interval(rig, clock):
    clock.wall_s = ALIGNED_HOUR + 10.0
    r = rig(PCW_MAINTENANCE_S="600", PCW_RETENTION_DAYS="1")

    ran_at = []
    for _ in range(int(HOUR_S / 10)):
        clock.advance(10.0)
        if r.writer.maintain():
            ran_at.append(clock.wall())

    assert ran_at == [ALIGNED_HOUR + 600.0 * k for k in range(1, 7)]


def test_vacuum_never_grows_the_file_when_nothing_is_old(rig, clock):
    clock.wall_s = ALIGNED_HOUR + 100.0
    r = rig()
    r.writer.store.write(ticks(500, ALIGNED_HOUR - DAY_S, gpus=4))
    r.writer.store.close()
    before = file_bytes(r.db_path)

    clock.advance(HOUR_S - 100.0)
    assert r.writer.maintain()

    assert file_bytes(r.db_path) <= before
    assert len(r.rows()) == 2000
