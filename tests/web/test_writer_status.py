"""/healthz hears the writer over its status socket, which needs no disk, before its old file."""

from __future__ import annotations

import asyncio
import os
import time

import zmq

from common.status import WriterStatus, encode_status, read_status, write_status
from services.web.app import create_app
from services.web.keys import WRITER
from tests.web.conftest import UUID_A, add_gpu, create_db, make_config

DEADLINE_S = 10.0


async def test_healthz_names_the_writers_error_from_its_socket_over_an_older_ok_file(
    aiohttp_client, tmp_path, zmq_context
):
    path = tmp_path / "gpu_stats.db"
    now = time.time()
    conn = create_db(path)
    add_gpu(conn, 1, UUID_A, "alpha", 0, now - 600, now - 5)
    conn.close()
    # What a full disk leaves: the last status file the writer could write, saying ok.
    write_status(path, WriterStatus(state="ok", updated_ts=now - 5, started_ts=now - 60))
    endpoint = f"ipc://@pycudawatch-test-{os.getpid()}-{time.monotonic_ns()}"
    publisher = zmq_context.socket(zmq.PUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.bind(endpoint)
    client = await aiohttp_client(create_app(make_config(path, PCW_STATUS_ENDPOINT=endpoint)))
    failing = WriterStatus(
        state="degraded",
        updated_ts=now,
        started_ts=now - 60,
        buffered_ticks=3,
        last_error="cannot store readings: database or disk is full",
    )

    loop = asyncio.get_running_loop()
    deadline = loop.time() + DEADLINE_S
    while True:  # a subscriber joins a moment after it connects: publish until it hears
        publisher.send_multipart(encode_status(failing))
        body = await (await client.get("/healthz")).json()
        if body["writer"]["state"] == "degraded" or loop.time() > deadline:
            break
        await asyncio.sleep(0.05)

    assert body["status"] == "degraded", body
    assert body["writer"]["last_error"] == failing.last_error
    assert (
        "the writer is degraded: cannot store readings: database or disk is full"
        in (body["problems"])
    )
    assert read_status(path).state == "ok"  # the file alone would have said ok


async def test_a_message_that_is_not_a_writer_status_is_counted_and_dropped(
    aiohttp_client, tmp_path
):
    client = await aiohttp_client(create_app(make_config(tmp_path / "gpu_stats.db")))
    feed = client.app[WRITER]

    assert not feed.handle([b"pcw-writer-status", b'{"state": 1}'])
    assert not feed.handle([b"something else"])

    assert feed.malformed_messages == 2 and feed.current() is None
