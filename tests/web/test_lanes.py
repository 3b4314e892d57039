"""The live view never waits behind long range reads; a full range lane is 503 + Retry-After."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from services.web.app import create_app
from services.web.keys import STORE
from tests.web.conftest import T0, UUID_A, UUID_B, add_gpu, create_db, make_config, wait_until

READINGS_PER_GPU = 60_000  # a history read of all of them from the raw rows takes ~0.2 s
LONG_READS = 20
LONG_URL = f"/api/v1/history?from={T0}&to={T0 + READINGS_PER_GPU}"


@pytest.fixture
def long_db(tmp_path: Path) -> Path:
    """Return a file of two GPUs with READINGS_PER_GPU readings each, one a second."""
    path = tmp_path / "gpu_stats.db"
    conn = create_db(path)
    conn.execute("BEGIN")
    for gpu_id, uuid in ((1, UUID_A), (2, UUID_B)):
        add_gpu(conn, gpu_id, uuid, "alpha", gpu_id - 1, T0, T0 + READINGS_PER_GPU - 1)
        conn.executemany(
            "INSERT INTO samples (gpu_id, ts, energy_j, power_w) VALUES (?, ?, ?, ?)",
            ((gpu_id, T0 + n, 300.0 * n, 300.0) for n in range(READINGS_PER_GPU)),
        )
    conn.execute("COMMIT")
    conn.close()
    return path


@pytest.fixture
async def client(aiohttp_client, long_db):
    # room for exactly LONG_READS range reads: 2 running, the rest waiting
    # and no history cache: each read reads the file again, as different ranges would
    config = make_config(
        long_db,
        PCW_RANGE_READERS="2",
        PCW_RANGE_READ_QUEUE=str(LONG_READS - 2),
        PCW_HISTORY_CACHE_BYTES="0",
    )
    return await aiohttp_client(create_app(config))


async def test_gpus_answer_while_20_long_reads_run_and_the_next_long_read_is_503(client):
    store = client.app[STORE]
    long_reads = [asyncio.create_task(client.get(LONG_URL)) for _ in range(LONG_READS)]
    await wait_until(
        lambda: store.held(long=True) == LONG_READS, timeout_s=60, what="the long reads held"
    )
    for _ in range(3):  # beyond the bound: refused at once, never queued
        refused = await client.get(LONG_URL)
        assert refused.status == 503
        assert int(refused.headers["Retry-After"]) >= 1
        assert "error" in await refused.json()
    live = await client.get("/api/v1/gpus")
    assert live.status == 200
    assert {gpu["gpu_uuid"] for gpu in (await live.json())["gpus"]} == {UUID_A, UUID_B}
    # it did not wait for them: they are still being read
    assert store.held(long=True) > 0
    assert not all(task.done() for task in long_reads)
    answers = await asyncio.gather(*long_reads)
    assert [answer.status for answer in answers] == [200] * LONG_READS
    metrics = await (await client.get("/metrics")).text()
    assert 'pycudawatch_http_errors_total{kind="busy"} 3.0' in metrics


@pytest.mark.parametrize(
    ("settings", "cache_kib"),
    [({}, 1024), ({"PCW_READER_CACHE_BYTES": str(5 * 1024 * 1024 + 1)}, 5120)],
)
async def test_every_reader_connection_holds_the_page_cache_its_setting_gives(
    aiohttp_client, long_db, settings, cache_kib
):
    config = make_config(long_db, PCW_LIVE_READERS="3", PCW_RANGE_READERS="2", **settings)
    client = await aiohttp_client(create_app(config))
    store = client.app[STORE]
    readers = {False: config.live_readers, True: config.range_readers}
    # every reader of a lane waits for the others, so each job runs in its own thread
    barriers = {long: threading.Barrier(count) for long, count in readers.items()}

    def read_back(long: bool) -> tuple[int, int]:
        def job(conn: sqlite3.Connection) -> tuple[int, int]:
            barriers[long].wait(timeout=10)
            return threading.get_ident(), conn.execute("PRAGMA cache_size").fetchone()[0]

        return job

    answers = await asyncio.gather(
        *(
            store.call(read_back(long), (0, 0), long=long)
            for long, count in readers.items()
            for _ in range(count)
        )
    )
    assert len({thread for thread, _ in answers}) == 5
    assert [size for _, size in answers] == [-(config.reader_cache_bytes // 1024)] * 5
    assert config.reader_cache_bytes // 1024 == cache_kib
