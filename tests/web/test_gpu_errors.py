"""GPUs in error: since when, in /api/v1/gpus and /healthz, from the file and from the live feed."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from common.messages import Tick
from common.status import WriterStatus, write_status
from services.web.app import create_app
from services.web.feed import ErrorRun, LiveFeed
from services.web.gpu_reads import ERROR_SINCE_SQL
from services.web.keys import FEED
from tests.web.conftest import (
    T0,
    UUID_A,
    UUID_B,
    UUID_C,
    add_gpu,
    add_sample,
    create_db,
    host_tick,
    make_config,
)

LOST = "GPU is lost"
NVML_DOWN = "NVML session lost: Driver Not Loaded"
UUID_D = "GPU-dddddddd-0000-0000-0000-000000000000"


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_readings(
    conn: sqlite3.Connection, gpu_id: int, readings: list[tuple[float, str | None]]
) -> None:
    """Insert (ts, error) readings of one GPU; error-free ones carry a utilization."""
    for ts, error in readings:
        if error is None:
            add_sample(conn, gpu_id, ts, util_gpu_pct=40)
        else:
            add_sample(conn, gpu_id, ts, error=error)


def by_uuid(body: dict) -> dict[str, dict]:
    return {gpu["gpu_uuid"]: gpu for gpu in body["gpus"]}


def fresh_status(now: float) -> WriterStatus:
    return WriterStatus(state="ok", updated_ts=now, started_ts=now - 600)


# -- from the file -----------------------------------------------------------------------------


@pytest.fixture
def errors_db(tmp_path: Path) -> Path:
    """A file with four GPUs: an error run after a break, errors from the start, a recovered GPU,
    and one without readings."""
    path = tmp_path / "errors.db"
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, T0, T0 + 50)
    first = [(T0, None), (T0 + 10, LOST), (T0 + 20, None), (T0 + 30, LOST), (T0 + 40, LOST)]
    add_readings(conn, 1, [*first, (T0 + 50, "Unknown Error")])
    add_gpu(conn, 2, UUID_B, "alpha", 1, T0 + 10, T0 + 50)
    add_readings(conn, 2, [(T0 + 10, LOST), (T0 + 30, LOST), (T0 + 50, LOST)])
    add_gpu(conn, 3, UUID_C, "alpha", 2, T0, T0 + 50)
    add_readings(conn, 3, [(T0, LOST), (T0 + 30, LOST), (T0 + 50, None)])
    add_gpu(conn, 4, UUID_D, "alpha", 3, T0, T0)
    conn.close()
    return path


async def test_error_since_is_the_start_of_the_current_run_and_survives_a_restart(
    aiohttp_client, errors_db
):
    answers = []
    for _restart in range(2):
        client = await aiohttp_client(create_app(make_config(errors_db)))
        answers.append(by_uuid(await (await client.get("/api/v1/gpus")).json()))
        await client.close()
    gpus = answers[0]
    # the run is unbroken from T0+30; a change of error text does not break it
    assert gpus[UUID_A]["latest"]["error"] == "Unknown Error"
    assert gpus[UUID_A]["error_since_ts"] == T0 + 30
    assert gpus[UUID_B]["error_since_ts"] == T0 + 10  # in error since its very first reading
    assert gpus[UUID_C]["latest"]["error"] is None
    assert gpus[UUID_C]["error_since_ts"] is None
    assert gpus[UUID_D]["latest"] is None
    assert gpus[UUID_D]["error_since_ts"] is None
    assert answers[1] == answers[0]  # the file alone gives the same answer after a restart


def test_the_error_since_query_reads_one_key_range(errors_db):
    conn = sqlite3.connect(errors_db)
    plan = [row[-1] for row in conn.execute("EXPLAIN QUERY PLAN " + ERROR_SINCE_SQL, (1,))]
    conn.close()
    searches = [line for line in plan if line.startswith(("SEARCH", "SCAN"))]
    assert searches == [
        "SEARCH samples USING PRIMARY KEY (gpu_id=? AND ts>?)",
        "SEARCH samples USING PRIMARY KEY (gpu_id=?)",
    ], plan
    assert not any("TEMP B-TREE" in line for line in plan), plan  # read from the key's end


@pytest.fixture(scope="module")
def model_db(tmp_path_factory) -> sqlite3.Connection:
    path = tmp_path_factory.mktemp("model") / "model.db"
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, T0, T0)
    yield conn
    conn.close()


@settings(max_examples=300, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=40))
def test_error_since_matches_a_plain_reading_of_the_rows(model_db, flags):
    """flags[k]: whether the reading at T0 + 10 k is in error."""
    model_db.execute("BEGIN")  # rolled back: no commit, no fsync per example
    add_readings(model_db, 1, [(T0 + 10 * k, LOST if bad else None) for k, bad in enumerate(flags)])
    (since_ts,) = model_db.execute(ERROR_SINCE_SQL, (1,)).fetchone()
    model_db.execute("ROLLBACK")
    if not flags[-1]:
        return  # only asked of GPUs whose latest reading is in error
    start = len(flags)
    while start > 0 and flags[start - 1]:
        start -= 1
    assert since_ts == T0 + 10 * start


# -- from the live feed ------------------------------------------------------------------------


async def test_live_errors_carry_since_when_the_feed_saw_them_begin(aiohttp_client, db_path):
    client = await aiohttp_client(create_app(make_config(db_path)))
    feed = client.app[FEED]

    async def since() -> float | None:
        return by_uuid(await (await client.get("/api/v1/gpus")).json())[UUID_A]["error_since_ts"]

    # the fixture's file: A read fine last at T0+300
    assert await since() is None
    assert feed.handle(host_tick(T0 + 400, {UUID_A: None}).to_frames())
    assert await since() is None
    assert feed.handle(host_tick(T0 + 410, {UUID_A: LOST}).to_frames())
    assert feed.handle(host_tick(T0 + 420, {UUID_A: LOST}).to_frames())
    assert await since() == T0 + 410
    assert feed.handle(host_tick(T0 + 430, {UUID_A: None}).to_frames())
    assert await since() is None
    assert feed.handle(host_tick(T0 + 440, {UUID_A: NVML_DOWN}).to_frames())
    assert await since() == T0 + 440
    assert feed.handle(host_tick(T0 + 200, {UUID_A: None}).to_frames())  # late; not the newest
    assert await since() == T0 + 440


async def test_after_a_restart_the_run_goes_on_from_the_file(aiohttp_client, tmp_path):
    """The web process restarts while a GPU is lost: the start comes from the file, not the
    first tick this process happened to receive."""
    now = time.time()
    path = tmp_path / "restart.db"
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, now - 900, now - 60)
    add_readings(conn, 1, [(now - 900, None), (now - 600, None)])
    add_readings(conn, 1, [(now - 300, LOST), (now - 180, LOST), (now - 60, LOST)])
    add_gpu(conn, 2, UUID_B, "alpha", 1, now - 900, now - 60)
    add_readings(conn, 2, [(now - 900, None), (now - 60, None)])
    conn.close()
    write_status(path, fresh_status(now))
    client = await aiohttp_client(create_app(make_config(path)))
    # B is lost only now, after the file's last error-free reading of it
    assert client.app[FEED].handle(host_tick(now - 1, {UUID_A: LOST, UUID_B: LOST}).to_frames())

    gpus = by_uuid(await (await client.get("/api/v1/gpus")).json())
    assert gpus[UUID_A]["latest"]["ts"] == now - 1  # the live reading
    assert gpus[UUID_A]["error_since_ts"] == now - 300
    assert gpus[UUID_B]["error_since_ts"] == now - 1

    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "degraded"
    assert body["gpu_errors"] == [
        {
            "host": "alpha",
            "gpu_index": 0,
            "gpu_uuid": UUID_A,
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "error": LOST,
            "since_ts": now - 300,
        },
        {
            "host": "alpha",
            "gpu_index": 1,
            "gpu_uuid": UUID_B,
            "gpu_name": "NVIDIA H100 80GB HBM3",
            "error": LOST,
            "since_ts": now - 1,
        },
    ]
    assert (
        f"GPU 0 (NVIDIA H100 80GB HBM3) on host alpha: {LOST} since {iso(now - 300)}"
        in (body["problems"])
    )


async def test_a_run_the_feed_saw_begin_wins_over_an_older_run_in_the_file(
    aiohttp_client, tmp_path
):
    """The file lags (the writer is stuck) and still ends in an old run of errors; the feed saw
    the GPU read fine since, so the current run began when the feed says."""
    now = time.time()
    path = tmp_path / "lagging.db"
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, now - 3600, now - 3000)
    add_readings(conn, 1, [(now - 3600, LOST), (now - 3000, LOST)])
    conn.close()
    client = await aiohttp_client(create_app(make_config(path)))
    feed = client.app[FEED]
    for ts, error in [(now - 30, LOST), (now - 20, None), (now - 10, LOST), (now, LOST)]:
        assert feed.handle(host_tick(ts, {UUID_A: error}).to_frames())
    gpus = by_uuid(await (await client.get("/api/v1/gpus")).json())
    assert gpus[UUID_A]["error_since_ts"] == now - 10


def test_the_feed_follows_each_gpu_and_forgets_those_no_longer_listed():
    feed = LiveFeed(on_message=lambda _message: None)
    feed.handle(host_tick(T0, {UUID_A: LOST, UUID_B: None}).to_frames())
    assert feed.error_run(UUID_A) == ErrorRun(T0, exact=False)  # in error when first seen
    assert feed.error_run(UUID_B) is None
    feed.handle(host_tick(T0 + 10, {UUID_A: LOST, UUID_B: LOST}).to_frames())
    assert feed.error_run(UUID_A) == ErrorRun(T0, exact=False)
    assert feed.error_run(UUID_B) == ErrorRun(T0 + 10, exact=True)
    feed.handle(host_tick(T0 + 20, {UUID_B: LOST}).to_frames())  # A taken out
    assert feed.error_run(UUID_A) is None
    assert UUID_A not in feed._error_runs  # bounded by the GPUs in the hosts' newest ticks
    feed.handle(host_tick(T0 + 30, {UUID_A: LOST}, host="beta").to_frames())
    assert feed.error_run(UUID_A) == ErrorRun(T0 + 30, exact=False)  # A moved hosts
    assert feed.error_run(UUID_B) == ErrorRun(T0 + 10, exact=True)


@settings(max_examples=300, deadline=None)
@given(flags=st.lists(st.booleans(), min_size=1, max_size=30))
def test_the_feed_s_error_run_matches_a_plain_reading_of_the_ticks(flags):
    feed = LiveFeed(on_message=lambda _message: None)
    for k, bad in enumerate(flags):
        feed.handle(host_tick(T0 + 10 * k, {UUID_A: LOST if bad else None}).to_frames())
    start = len(flags)
    while start > 0 and flags[start - 1]:
        start -= 1
    if start == len(flags):
        assert feed.error_run(UUID_A) is None
    else:
        assert feed.error_run(UUID_A) == ErrorRun(T0 + 10 * start, exact=start > 0)


# -- /healthz ----------------------------------------------------------------------------------


async def test_nvml_down_on_a_host_degrades_health_with_one_problem_per_gpu(
    aiohttp_client, tmp_path, publisher
):
    """End to end over ZeroMQ: NVML fails, every GPU of the host carries the error; readings
    still arrive, so the status is degraded, not down; it clears when NVML is back."""
    pub, endpoint = publisher
    path = tmp_path / "nvml.db"
    create_db(path).close()
    now = time.time()
    write_status(path, fresh_status(now))
    client = await aiohttp_client(create_app(make_config(path, PCW_SUBSCRIBE=endpoint)))
    feed = client.app[FEED]

    async def publish_until_received(tick: Tick) -> None:
        """Send the tick until the feed has it: PUB drops everything until the SUB has joined."""
        before = feed.received_ticks
        for _attempt in range(250):
            pub.send_multipart(tick.to_frames())
            await asyncio.sleep(0.02)
            if feed.received_ticks > before:
                return
        raise AssertionError(f"tick {tick.seq} never arrived")

    await publish_until_received(host_tick(now - 20, {UUID_A: None, UUID_B: None}, seq=1))
    await publish_until_received(host_tick(now - 10, {UUID_A: NVML_DOWN, UUID_B: NVML_DOWN}, seq=2))
    await publish_until_received(host_tick(now, {UUID_A: NVML_DOWN, UUID_B: NVML_DOWN}, seq=3))

    gpus = by_uuid(await (await client.get("/api/v1/gpus")).json())
    assert [gpus[u]["error_since_ts"] for u in (UUID_A, UUID_B)] == [now - 10, now - 10]
    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 503
    assert body["status"] == "degraded", body
    assert [(e["gpu_index"], e["error"], e["since_ts"]) for e in body["gpu_errors"]] == [
        (0, NVML_DOWN, now - 10),
        (1, NVML_DOWN, now - 10),
    ]
    for index in (0, 1):
        line = (
            f"GPU {index} (NVIDIA H100 80GB HBM3) on host alpha: {NVML_DOWN} since {iso(now - 10)}"
        )
        assert line in body["problems"]

    await publish_until_received(host_tick(now + 1, {UUID_A: None, UUID_B: None}, seq=4))
    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 200, body
    assert body["gpu_errors"] == []
    gpus = (await (await client.get("/api/v1/gpus")).json())["gpus"]
    assert [g["error_since_ts"] for g in gpus] == [None, None]


async def test_only_current_errors_are_problems(aiohttp_client, tmp_path):
    """A GPU the sampler no longer lists, or a host that stopped reporting, is not judged on
    its last, errored, reading."""
    now = time.time()
    path = tmp_path / "current.db"
    conn = create_db(path)
    # lost, then taken out: the sampler's ticks since (the last one 5 s ago) do not list it
    add_gpu(conn, 1, UUID_A, "alpha", 0, now - 900, now - 15)
    add_readings(conn, 1, [(now - 900, None), (now - 25, LOST), (now - 15, LOST)])
    add_gpu(conn, 2, UUID_B, "alpha", 1, now - 900, now - 5)
    add_readings(conn, 2, [(now - 900, None), (now - 5, None)])
    add_gpu(conn, 3, UUID_C, "beta", 0, now - 9000, now - 7200)  # its host is gone
    add_readings(conn, 3, [(now - 9000, LOST), (now - 7200, LOST)])
    conn.close()
    write_status(path, fresh_status(now))
    client = await aiohttp_client(create_app(make_config(path)))
    gpus = by_uuid(await (await client.get("/api/v1/gpus")).json())
    assert gpus[UUID_A]["error_since_ts"] == now - 25  # the API still says what it knows
    assert gpus[UUID_C]["error_since_ts"] == now - 9000
    response = await client.get("/healthz")
    body = await response.json()
    assert response.status == 200, body
    assert body["gpu_errors"] == []

    # the live feed reports beta again, its GPU still lost: now it counts
    client.app[FEED].handle(host_tick(now, {UUID_C: LOST}, host="beta").to_frames())
    body = await (await client.get("/healthz")).json()
    assert [(e["host"], e["since_ts"]) for e in body["gpu_errors"]] == [("beta", now - 9000)]
    assert body["status"] == "degraded"


async def test_healthz_passes_on_the_writer_s_counters(aiohttp_client, tmp_path):
    path = tmp_path / "counters.db"
    create_db(path).close()
    client = await aiohttp_client(create_app(make_config(path)))
    writer = (await (await client.get("/healthz")).json())["writer"]
    counters = (
        "buffered_ticks",
        "dropped_ticks",
        "replay_gaps",
        "lost_ticks",
        "malformed_messages",
        "stored_readings",
    )
    assert all(writer[name] is None for name in counters)  # no status file yet

    now = time.time()
    status = WriterStatus(
        state="ok",
        updated_ts=now,
        started_ts=now - 60,
        buffered_ticks=3,
        stored_ticks=100,
        stored_readings=800,
        malformed_messages=2,
        dropped_ticks=5,
        replay_gaps=4,
        lost_ticks=7,
    )
    write_status(path, status)
    writer = (await (await client.get("/healthz")).json())["writer"]
    assert {name: writer[name] for name in counters} == {
        "buffered_ticks": 3,
        "dropped_ticks": 5,
        "replay_gaps": 4,
        "lost_ticks": 7,
        "malformed_messages": 2,
        "stored_readings": 800,
    }
    assert writer["stored_ticks"] == 100
    assert writer["state"] == "ok"
