"""Fixtures of the web tests: a hand-filled SQLite file, configs, and a real ZeroMQ publisher."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import zmq

from common.config import Config, load_config
from common.messages import GpuReading, Tick
from common.metrics import METRIC_NAMES
from common.schema import migrate
from services.web.app import create_app
from services.web.keys import FEED
from services.writer.store import Store
from tests.bench.generate import fast_host_ticks

# A multiple of 60 s, so that 60-second buckets start at T0.
T0 = 1_699_999_980.0
assert T0 % 60 == 0

UUID_A = "GPU-aaaaaaaa-0000-0000-0000-000000000000"
UUID_B = "GPU-bbbbbbbb-0000-0000-0000-000000000000"
UUID_C = "GPU-cccccccc-0000-0000-0000-000000000000"


def make_config(db_path: Path, **env: str) -> Config:
    """Return a Config for the web process on db_path; env overrides PCW_* settings."""
    return load_config(
        {
            "PCW_DB_PATH": str(db_path),
            "PCW_HOST_NAME": "testhost",
            "PCW_SUBSCRIBE": "tcp://127.0.0.1:1",  # nothing listens there; overridden in live tests
            "PCW_INTERVAL_S": "10",
            **env,
        }
    )


def create_db(path: Path) -> sqlite3.Connection:
    """Create the schema at path and return a writable autocommit connection."""
    conn = sqlite3.connect(path, isolation_level=None)
    migrate(conn)
    return conn


def write_hosts(
    path: Path,
    intervals_s: dict[str, float],
    first_ts: float,
    span_s: float,
    outage: tuple[float, float],
    change: Callable[[Tick, int], Tick] | None = None,
) -> Path:
    """Fill path with the writer itself (Store): two generated GPUs per host, sampled at its
    interval over span_s, no reading in [outage); change(tick, seq) alters a tick if given."""
    store = Store(path)
    try:
        for number, (host, interval_s) in enumerate(intervals_s.items()):
            count = int(span_s / interval_s)
            made = fast_host_ticks(host, 2, first_ts, count, interval_s, number)
            ticks = [
                tick if change is None else change(tick, seq)
                for seq, tick in enumerate(made)
                if not outage[0] <= tick.ts < outage[1]
            ]
            for start in range(0, len(ticks), 500):
                store.write(ticks[start : start + 500])
    finally:
        store.close()
    return path


def add_gpu(
    conn: sqlite3.Connection,
    gpu_id: int,
    uuid: str,
    host: str,
    index: int,
    first_ts: float,
    last_ts: float,
    name: str = "NVIDIA Test GPU",
) -> None:
    """Insert one GPU row."""
    # Columns named: later migrations add columns to gpus (with defaults).
    conn.execute(
        "INSERT INTO gpus (gpu_id, gpu_uuid, host, gpu_index, gpu_name, pci_bus_id,"
        " driver_version, first_ts, last_ts) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (gpu_id, uuid, host, index, name, f"0000:0{index}:00.0", "550.54", first_ts, last_ts),
    )


def add_sample(
    conn: sqlite3.Connection, gpu_id: int, ts: float, error: str | None = None, **metrics: float
) -> None:
    """Insert one reading; metrics not named are NULL."""
    assert set(metrics) <= set(METRIC_NAMES)
    columns = ", ".join(("gpu_id", "ts", "error", *METRIC_NAMES))
    values = (gpu_id, ts, error, *(metrics.get(name) for name in METRIC_NAMES))
    conn.execute(f"INSERT INTO samples ({columns}) VALUES ({', '.join('?' * len(values))})", values)


def fill_fixture(conn: sqlite3.Connection) -> None:
    """Write the readings the tests compute against by hand (see test_history_values)."""
    add_gpu(conn, 1, UUID_A, "alpha", 0, T0 - 10, T0 + 300)
    add_gpu(conn, 2, UUID_B, "alpha", 1, T0 + 130, T0 + 130, name="<b>GPU & co</b>")
    add_gpu(conn, 3, UUID_C, "beta", 0, T0 - 100_000, T0 - 90_000)
    add_sample(conn, 1, T0 - 10, util_gpu_pct=99)  # before the range
    # bucket 0 [T0, T0+60): two readings and an errored row; fan_pct never read
    add_sample(conn, 1, T0, util_gpu_pct=10, temp_c=50, power_w=100.0, mem_used_bytes=1000)
    add_sample(conn, 1, T0 + 10, util_gpu_pct=20, temp_c=52, power_w=110.5, mem_used_bytes=3000)
    add_sample(conn, 1, T0 + 20, error="GPU is lost")
    # bucket 1 [T0+60, T0+120): nothing, a gap
    # bucket 2 [T0+120, T0+180): fan_pct in one row of two
    add_sample(conn, 1, T0 + 120, util_gpu_pct=30, fan_pct=40)
    add_sample(conn, 1, T0 + 130, util_gpu_pct=60)
    # bucket 3: a zero that must stay a zero
    add_sample(conn, 1, T0 + 180, util_gpu_pct=0)
    # bucket 4: the last moment of the range
    add_sample(conn, 1, T0 + 299.5, util_gpu_pct=100)
    add_sample(conn, 1, T0 + 300, util_gpu_pct=77, temp_c=61)  # after the range; the latest
    add_sample(conn, 2, T0 + 130, util_gpu_pct=5, temp_c=40)
    add_sample(conn, 3, T0 - 90_000, util_gpu_pct=1)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Return the path of a closed SQLite file holding the fixture readings."""
    path = tmp_path / "gpu_stats.db"
    conn = create_db(path)
    fill_fixture(conn)
    conn.close()
    return path


@pytest.fixture
def config(db_path: Path) -> Config:
    """Return a Config reading the fixture file."""
    return make_config(db_path)


@pytest.fixture
def publisher() -> Iterator[tuple[zmq.Socket, str]]:
    """Return a ZeroMQ PUB socket bound to a free loopback port, and its endpoint."""
    context = zmq.Context()
    socket = context.socket(zmq.PUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.bind("tcp://127.0.0.1:*")
    endpoint = socket.getsockopt(zmq.LAST_ENDPOINT).decode()
    yield socket, endpoint
    socket.close(linger=0)
    context.term()


def make_tick(
    host: str = "alpha", seq: int = 0, ts: float = T0 + 400, gpu_count: int = 1, **metrics: float
) -> Tick:
    """Return a tick of `gpu_count` GPUs of host, each with the given metrics."""
    gpus = [
        GpuReading(
            index=index,
            uuid=UUID_A if index == 0 else f"GPU-live-{host}-{index}",
            name="NVIDIA Test GPU",
            **metrics,
        )
        for index in range(gpu_count)
    ]
    return Tick(
        host=host,
        sampler_id="test",
        seq=seq,
        ts=ts,
        interval_s=10.0,
        driver_version="550.54",
        gpus=gpus,
    )


def host_tick(ts: float, errors: dict[str, str | None], host: str = "alpha", seq: int = 0) -> Tick:
    """Return a tick of `host` at ts with one GPU per UUID in `errors` (None: read fine)."""
    gpus = [
        GpuReading(
            index=index,
            uuid=uuid,
            name="NVIDIA H100 80GB HBM3",
            error=error,
            util_gpu_pct=None if error else 50,
        )
        for index, (uuid, error) in enumerate(errors.items())
    ]
    return Tick(host=host, sampler_id="s", seq=seq, ts=ts, interval_s=10.0, gpus=gpus)


async def wait_until(
    predicate: Callable[[], bool], timeout_s: float = 5.0, what: str = "condition"
) -> None:
    """Poll predicate() every 10 ms until it is true; fail after timeout_s."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@pytest.fixture
def live_config(db_path, publisher):
    _socket, endpoint = publisher
    return make_config(db_path, PCW_SUBSCRIBE=endpoint)


@pytest.fixture
async def live_client(aiohttp_client, live_config, publisher):
    client = await aiohttp_client(create_app(live_config))
    await feed_connected(client.app, publisher[0])
    return client


async def feed_connected(app, pub) -> None:
    """Publish probe ticks until the app's SUB socket receives one (PUB drops until then)."""
    feed = app[FEED]
    start = feed.received_ticks
    for seq in range(500):
        pub.send_multipart(make_tick(host="probe", seq=seq, ts=time.time()).to_frames())
        await asyncio.sleep(0.01)
        if feed.received_ticks > start:
            return
    raise AssertionError("the live feed never received a tick")
