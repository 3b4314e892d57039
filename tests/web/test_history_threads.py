"""A history answer read on several range-read threads is, byte for byte, the one-thread answer.

The columns answer shares its GPUs between PCW_HISTORY_READERS threads (ordered_reads) and is
gzipped GPU by GPU as it is read (history_body). On a file the writer filled (three hosts named
out of order, two GPUs each, sampled every 10, 45 and 60 s, an outage: gaps), the two-thread
answer must be the one-thread answer, and each must decompress to the plain one. The first GPU
of the answer is held back until another GPU is read, so that the second thread's GPUs are
read before it: an answer that joined the GPUs as they came would differ.
"""

from __future__ import annotations

import gzip
import json
import sqlite3
import threading

import pytest

from common.metrics import METRIC_NAMES
from services.web import history_body
from services.web.app import create_app
from services.web.ordered_reads import OrderedParts
from tests.web.conftest import make_config, write_hosts

HOUR_S = 3600
SPAN_S = 8 * HOUR_S
END_TS = 1_790_006_400.0  # a multiple of 7200
FIRST_TS = END_TS - SPAN_S
OUTAGE = (FIRST_TS + 2 * HOUR_S + 17, FIRST_TS + 3 * HOUR_S + 3)  # no reading at all
HOSTS = {"m-host": 10.0, "c-host": 45.0, "x-host": 60.0}  # name: interval; sorted: c, m, x
HELD_BACK_S = 5.0  # how long the first GPU's read waits for another GPU's read, at most
# (hours before END_TS, hours long, points): raw rows, 60 s and 300 s levels, grouped buckets,
# a range starting before the first reading and one reaching past the last (gaps at the ends).
WINDOWS = [(1, 1, 500), (8, 8, 500), (6, 5, 37), (9, 10, 100)]


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    path = tmp_path_factory.mktemp("threads") / "gpu_stats.db"
    return write_hosts(path, HOSTS, FIRST_TS, SPAN_S, OUTAGE)


class FirstHeldBack:
    """Wraps history_body.read_columns: the answer's first GPU (the lowest host's GPU 0) is
    read only once another GPU's read is done; it records which threads read."""

    def __init__(self, read_columns):
        self._read_columns = read_columns
        self._other_read = threading.Event()
        self.threads: set[int] = set()

    def __call__(self, conn, gpu, *args):
        self.threads.add(threading.get_ident())
        if (gpu.host, gpu.gpu_index) == ("c-host", 0):
            self._other_read.wait(HELD_BACK_S)
            return self._read_columns(conn, gpu, *args)
        answer = self._read_columns(conn, gpu, *args)
        self._other_read.set()
        return answer


def _window(before_h: int, hours: int, points: int) -> list[tuple[str, str]]:
    return [
        ("from", repr(END_TS - before_h * HOUR_S)),
        ("to", repr(END_TS - (before_h - hours) * HOUR_S)),
        ("points", str(points)),
        *(("metric", name) for name in METRIC_NAMES),
    ]


async def _raw(client, params, encoding: str) -> tuple[bytes, dict[str, str]]:
    response = await client.get(
        "/api/v1/history",
        params=params,
        headers={"Accept-Encoding": encoding},
        auto_decompress=False,
    )
    assert response.status == 200, await response.text()
    return await response.read(), dict(response.headers)


@pytest.mark.parametrize("cache_bytes", ["0", "16777216"])
@pytest.mark.parametrize(("before_h", "hours", "points"), WINDOWS)
async def test_two_threads_answer_the_one_thread_answer_byte_for_byte(
    aiohttp_client, written, monkeypatch, cache_bytes, before_h, hours, points
):
    settings = {"PCW_RANGE_READERS": "2", "PCW_HISTORY_CACHE_BYTES": cache_bytes}
    one = await aiohttp_client(
        create_app(make_config(written, PCW_HISTORY_READERS="1", **settings))
    )
    two = await aiohttp_client(
        create_app(make_config(written, PCW_HISTORY_READERS="2", **settings))
    )
    params = _window(before_h, hours, points)
    expected, _ = await _raw(one, params, "")

    held_back = FirstHeldBack(history_body.read_columns)
    monkeypatch.setattr(history_body, "read_columns", held_back)
    for _ in range(2):  # the second time, with a cache, from the cached buckets
        plain, plain_headers = await _raw(two, params, "")
        zipped, zipped_headers = await _raw(two, params, "gzip, deflate")
        assert "Content-Encoding" not in plain_headers
        assert zipped_headers["Content-Encoding"] == "gzip"
        assert zipped_headers["Vary"] == plain_headers["Vary"] == "Accept-Encoding"
        assert int(zipped_headers["Content-Length"]) == len(zipped)
        assert plain == expected
        assert gzip.decompress(zipped) == expected
    assert len(held_back.threads) == 2  # both threads read GPUs

    body = json.loads(expected)
    assert [(s["host"], s["gpu_index"]) for s in body["series"]] == [
        (host, index) for host in sorted(HOSTS) for index in range(2)
    ]
    assert any(0 in s["count"] for s in body["series"])  # the outage or an end: gaps


async def test_a_small_answer_is_sent_plain_as_before(aiohttp_client, written):
    client = await aiohttp_client(create_app(make_config(written)))
    # one bucket, one metric, one host: well under the 1 KiB past which answers are gzipped
    params = [
        ("from", repr(END_TS - 60)),
        ("to", repr(END_TS)),
        ("points", "1"),
        ("metric", "temp_c"),
        ("host", "x-host"),
    ]
    body, headers = await _raw(client, params, "gzip")
    assert "Content-Encoding" not in headers
    assert "Vary" not in headers
    assert len(body) < 1024
    assert [s["host"] for s in json.loads(body)["series"]] == ["x-host", "x-host"]


async def test_an_error_in_either_thread_is_a_503_and_the_next_answer_is_whole(
    aiohttp_client, written, monkeypatch
):
    client = await aiohttp_client(
        create_app(make_config(written, PCW_HISTORY_READERS="2", PCW_HISTORY_CACHE_BYTES="0"))
    )
    params = _window(8, 8, 500)
    expected, _ = await _raw(client, params, "")
    read_columns = history_body.read_columns

    def failing(conn, gpu, *args):
        if gpu.host == "m-host":
            raise sqlite3.OperationalError("disk I/O error")
        return read_columns(conn, gpu, *args)

    monkeypatch.setattr(history_body, "read_columns", failing)
    response = await client.get("/api/v1/history", params=params)
    assert response.status == 503
    assert "disk I/O error" in (await response.json())["error"]
    monkeypatch.setattr(history_body, "read_columns", read_columns)
    assert (await _raw(client, params, ""))[0] == expected


def test_parts_are_written_in_their_order_whichever_thread_reads_them_first():
    written: list[bytes] = []
    first_may_go = threading.Event()

    class Sink:
        def write(self, part: bytes) -> None:
            written.append(part)

        def finish(self) -> bytes:
            return b"|".join(written)

    def read(conn, index: int) -> bytes:
        if index == 0:
            assert first_may_go.wait(HELD_BACK_S)
        else:
            first_may_go.set()
        return str(index).encode()

    parts = OrderedParts(6, read, Sink())
    threads = [threading.Thread(target=parts.work, args=(None,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert parts.done.result() == b"0|1|2|3|4|5"
