"""The columns answer of /api/v1/history: the GPUs it lists, and its bytes, built GPU by GPU
and gzipped as they grow.

Byte for byte what json_reply(HistoryColumnsReply(...)) sends (msgspec writes no space, so a
list is its items' encodings joined by commas); built so that the range-read threads can each
encode the GPUs they read (ordered_reads), and the gzip stream takes each GPU's part as it comes
instead of the whole answer (~1.3 MB for 30 days of 64 GPUs) after the last read. The answer is
gzipped as the compress middleware would (level 1, past COMPRESS_MIN_BYTES, when the client
takes gzip); that middleware leaves an answer that says its Content-Encoding as it is.
"""

from __future__ import annotations

import sqlite3
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import msgspec
from aiohttp import web

from common.messages import Tick
from services.web.buckets import empty_columns
from services.web.fleet import live_readings
from services.web.history_cache import HistoryCache
from services.web.history_reads import GpuChoice, choose_gpus, read_columns, rollup_level
from services.web.middlewares import COMPRESS_MIN_BYTES, gzip_compressor
from services.web.ordered_reads import OrderedParts
from services.web.params import HistoryQuery
from services.web.replies import not_known_reply
from services.web.rows import GpuRow
from services.web.shapes import ColumnSeries, HistoryColumnsReply

_ENCODE = msgspec.json.Encoder().encode

# A GPU only the live feed knows: (uuid, host, index, name).
LiveOnly = tuple[str, str, int, str]


def live_only_gpus(
    query: HistoryQuery,
    step_s: int,
    first_bucket: int,
    bucket_count: int,
    missing_uuids: Sequence[str],
    listed: set[str],
    ticks: Sequence[Tick],
) -> list[LiveOnly]:
    """Return the GPUs the live feed knows but the file does not hold yet (listed: those it
    does): asked for by UUID, or with none asked for, ticking inside the buckets. They have
    no history, so the answer lists them with gaps only."""
    low_s, high_s = first_bucket * step_s, (first_bucket + bucket_count) * step_s
    in_feed = live_readings(ticks)
    wanted = missing_uuids if query.gpu_uuids else list(in_feed)
    live_only: list[LiveOnly] = []
    for uuid in wanted:
        tick, reading = in_feed[uuid]
        if query.hosts and tick.host not in query.hosts:
            continue
        if uuid not in listed and (query.gpu_uuids or low_s <= tick.ts < high_s):
            live_only.append((uuid, tick.host, reading.index, reading.name))
    return live_only


@dataclass(frozen=True)
class ColumnsAnswer:
    """What the first range-read thread planned: the 404 for a GPU or host nobody knows, or
    the parts (one per GPU, in the answer's order) and the sink they are written to."""

    unknown: web.Response | None = None
    parts: OrderedParts | None = None
    sink: BodySink | None = None


def columns_plan(
    query: HistoryQuery,
    step_s: int,
    first_bucket: int,
    bucket_count: int,
    ticks: Sequence[Tick],
    cache: HistoryCache | None,
    *,
    gzip: bool,
) -> Callable[[sqlite3.Connection | None], ColumnsAnswer]:
    """Return what plans the answer in a range-read thread (ordered_reads.read_in_order): the
    GPUs chosen (conn None: no file yet, so none), the live-only ones (from the live feed's
    `ticks`), sorted by (host, index, UUID)."""
    low_s, high_s = first_bucket * step_s, (first_bucket + bucket_count) * step_s

    def plan(conn: sqlite3.Connection | None) -> ColumnsAnswer:
        if conn is None:
            choice = GpuChoice([], list(query.gpu_uuids), list(query.hosts))
        else:
            choice = choose_gpus(conn, query.gpu_uuids, query.hosts, low_s, high_s)
        unknown = not_known_reply(choice.missing_uuids, choice.missing_hosts, ticks)
        if unknown is not None:
            return ColumnsAnswer(unknown)
        listed = {gpu.gpu_uuid for gpu in choice.gpus}
        live_only = live_only_gpus(
            query, step_s, first_bucket, bucket_count, choice.missing_uuids, listed, ticks
        )
        parts: list[tuple[tuple[str, int, str], GpuRow | bytes]] = [
            ((gpu.host, gpu.gpu_index, gpu.gpu_uuid), gpu) for gpu in choice.gpus
        ]
        if live_only:  # the same arrays for every such GPU: encoded once
            counts, values = empty_columns(query.metrics, bucket_count)
            zeros, nulls = _ENCODE(counts), _ENCODE(values)
            for uuid, host, index, name in live_only:
                gaps = series_json(uuid, host, index, name, zeros, nulls, nulls)
                parts.append(((host, index, uuid), gaps))
        parts.sort(key=lambda part: part[0])
        ts = [(first_bucket + offset) * step_s for offset in range(bucket_count)]
        sink = BodySink(*envelope(query.from_s, query.to_s, step_s, ts), gzip=gzip)
        read = gpu_reader(
            [part for _, part in parts], first_bucket, bucket_count, step_s, query.metrics, cache
        )
        return ColumnsAnswer(None, OrderedParts(len(parts), read, sink), sink)

    return plan


_MARK = b"@"  # in no number or key of the answer's head


def envelope(from_s: float, to_s: float, step_s: int, ts: list[int]) -> tuple[bytes, bytes]:
    """Return the answer's bytes before its first series and after its last."""
    placeholder = cast(list[ColumnSeries], [msgspec.Raw(_MARK)])
    whole = _ENCODE(HistoryColumnsReply(from_s, to_s, step_s, ts, placeholder))
    head, tail = whole.split(b"[" + _MARK + b"]")
    return head + b"[", b"]" + tail


def series_json(
    gpu_uuid: str, host: str, gpu_index: int, gpu_name: str, count: bytes, mean: bytes, top: bytes
) -> bytes:
    """Return one GPU's ColumnSeries as JSON, its arrays (JSON already) placed as they are."""
    return _ENCODE(
        ColumnSeries(
            gpu_uuid,
            host,
            gpu_index,
            gpu_name,
            msgspec.Raw(count),
            msgspec.Raw(mean),
            msgspec.Raw(top),
        )
    )


def gpu_reader(
    parts: Sequence[GpuRow | bytes],
    first_bucket: int,
    bucket_count: int,
    step_s: int,
    metrics: Sequence[str],
    cache: HistoryCache | None,
) -> Callable[[sqlite3.Connection | None, int], bytes]:
    """Return what reads part i: a GPU's buckets from the file (through the cache), encoded, or
    a part already encoded (a GPU only the live feed knows: all gaps)."""
    last_bucket = first_bucket + bucket_count - 1

    def read(conn: sqlite3.Connection | None, index: int) -> bytes:
        part = parts[index]
        if isinstance(part, bytes):
            return part
        assert conn is not None, "a GPU of the file is read from the file"
        level_s = rollup_level(step_s, part.interval_s)
        columns = read_columns(
            conn, part, level_s, step_s, first_bucket, last_bucket, metrics, cache
        )
        return series_json(
            part.gpu_uuid,
            part.host,
            part.gpu_index,
            part.gpu_name,
            columns.counts_json(),
            columns.means_json(),
            columns.maxima_json(),
        )

    return read


class BodySink:
    """The answer: its head, the series written in order (ordered_reads.Sink), its tail.

    With gzip, the bytes are compressed as they come once past COMPRESS_MIN_BYTES (the smaller
    answer is sent plain, as the middleware would). zlib lets go of the GIL while it compresses,
    so this overlaps the other thread's read.
    """

    def __init__(self, head: bytes, tail: bytes, *, gzip: bool) -> None:
        self.plain_bytes = 0
        self._tail = tail
        self._gzip = gzip
        self._compressor: zlib._Compress | None = None
        self._plain: list[bytes] = []
        self._out: list[bytes] = []
        self._series = 0
        self._add(head)

    @property
    def gzipped(self) -> bool:
        """Return whether finish() returns a gzip stream."""
        return self._compressor is not None

    def write(self, part: bytes) -> None:
        """Take the next series."""
        if self._series:
            self._add(b",")
        self._series += 1
        self._add(part)

    def finish(self) -> bytes:
        """Return the whole answer, gzipped or plain."""
        self._add(self._tail)
        if self._compressor is None:
            return b"".join(self._plain)
        self._out.append(self._compressor.flush())
        return b"".join(self._out)

    def _add(self, data: bytes) -> None:
        self.plain_bytes += len(data)
        if self._compressor is None:
            self._plain.append(data)
            if not self._gzip or self.plain_bytes <= COMPRESS_MIN_BYTES:
                return
            self._compressor = gzip_compressor()
            data, self._plain = b"".join(self._plain), []
        compressed = self._compressor.compress(data)
        if compressed:
            self._out.append(compressed)
