"""A real writer process under hostile ZeroMQ input keeps storing what is valid."""

from __future__ import annotations

import sqlite3
import time

import zmq

from common.messages import MAX_MESSAGE_BYTES, GpuReading, Tick
from common.status import read_status
from tests.stack import Stack, ephemeral_ports, free_port, wait_until


def _tick(seq: int, ts: float) -> Tick:
    gpu = GpuReading(index=0, uuid="GPU-hostile-0", name="NVIDIA Test", util_gpu_pct=seq % 100)
    return Tick(host="hostile", sampler_id="run1", seq=seq, ts=ts, interval_s=1.0, gpus=[gpu])


def _stored(db_path) -> int:
    if not db_path.exists():
        return 0
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return conn.execute("SELECT count(*) FROM readings").fetchone()[0]
    except sqlite3.OperationalError:
        return 0
    finally:
        conn.close()


def test_oversized_and_garbage_frames_are_counted_and_later_ticks_stored(tmp_path, zmq_context):
    endpoint = f"tcp://127.0.0.1:{free_port(consecutive=2)}"
    publisher = zmq_context.socket(zmq.XPUB)
    publisher.setsockopt(zmq.LINGER, 0)
    publisher.bind(endpoint)
    env = {"PCW_PUB_ENDPOINT": endpoint}
    try:
        with Stack(tmp_path, env, supervised=False, programs=("writer",)) as stack:
            db_path = stack.db_path
            assert publisher.poll(20_000), "the writer never subscribed"
            publisher.recv()
            first_ts = time.time() // 1
            publisher.send_multipart(_tick(0, first_ts).to_frames())
            wait_until(lambda: _stored(db_path) == 1, 20, "the first tick to be stored")
            seq = 1

            def publish_until_stored(count: int) -> None:
                nonlocal seq
                deadline = time.monotonic() + 20
                while _stored(db_path) < count and time.monotonic() < deadline:
                    publisher.send_multipart(_tick(seq, first_ts + seq).to_frames())
                    seq += 1
                    time.sleep(0.3)
                assert _stored(db_path) >= count, stack.logs()

            # a frame over the cap makes libzmq drop the connection: the writer connects again
            publisher.send_multipart([b"pcw.tick", b"1", b"\x00" * (MAX_MESSAGE_BYTES + 1)])
            publish_until_stored(2)
            for frames in ([b"pcw.tick"], [b"pcw.tick", b"9", b"x"], [b"pcw.tick", b"1", b"\xc1"]):
                publisher.send_multipart(frames)
            publish_until_stored(_stored(db_path) + 2)

            # the writer reports its counts within a status period (10 s): wait for them
            def four_malformed() -> bool:
                status = read_status(db_path)
                return status is not None and status.malformed_messages >= 4

            wait_until(four_malformed, 60, "the writer to report 4 malformed messages", stack)
            assert read_status(db_path).malformed_messages == 4
            assert stack.stop("writer") == 0
            logs = stack.logs()
    finally:
        publisher.close(linger=0)
    assert "connecting again" in logs


def test_free_ports_are_never_the_source_port_of_a_retried_connect():
    # In the test above the writer's replay socket retries port + 1, which nobody binds, ten
    # times a second: were it in the ephemeral range, the kernel would one day give that very
    # port as the retry's source, and the socket would connect to itself and count its own
    # replay requests as malformed messages (once seen: 6 counted for 4 sent).
    ephemeral = ephemeral_ports()
    for _ in range(50):
        first = free_port(consecutive=2)
        assert first not in ephemeral and first + 1 not in ephemeral
