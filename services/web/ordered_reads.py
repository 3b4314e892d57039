"""Read one answer's parts on several range-read threads at once, and use them in their order.

Why: a history answer of 64 GPUs is 64 independent reads; sqlite3 lets go of the GIL while a
statement runs, and zlib while it compresses, so on two cores two threads read two GPUs at once,
and whichever thread finds the next part in order hands it to the sink (the answer's gzip stream)
while the other reads on: the compression overlaps the reads instead of following them.

The threads are the store's range readers (store.py), each with its own connection and read
transaction: the parts of one answer may come from snapshots a commit apart. Each thread that
takes part is one call in the range lane, so the lane's bound on threads and waiting calls holds
as it is: a thread past that bound is simply not used, and one that starts after the parts are
all read returns at once. The answer never waits for such a late thread.
"""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from typing import Protocol, TypeVar

from services.web.store import Store, StoreBusyError, StoreError


class Sink(Protocol):
    """What takes the parts, in order, and makes the answer's bytes of them."""

    def write(self, part: bytes) -> None:
        """Take the next part."""

    def finish(self) -> bytes:
        """Return the whole answer, once every part is written."""


class OrderedParts:
    """Parts 0..count-1, read by any thread running work(), written to sink in their order.

    A thread takes the next unread part, reads it, and then writes every part that is next in
    order and read, unless another thread is writing already (which then writes it too). The
    thread that writes the last part finishes the sink and sets `done` to the answer.
    """

    def __init__(
        self, count: int, read: Callable[[sqlite3.Connection | None, int], bytes], sink: Sink
    ) -> None:
        self.count = count
        self.done: Future[bytes] = Future()
        self._read = read
        self._sink = sink
        self._lock = threading.Lock()
        self._next_read = 0
        self._next_write = 0
        self._read_parts: dict[int, bytes] = {}  # read, not yet written
        self._writing = False
        self._stopped = False
        if count == 0:
            self.done.set_result(sink.finish())

    def work(self, conn: sqlite3.Connection | None) -> None:
        """Read parts until none is left (a job for Store.call, run by each thread taking part;
        conn None without a file, where every part is read already)."""
        try:
            while True:
                with self._lock:
                    if self._stopped or self._next_read >= self.count:
                        return
                    index = self._next_read
                    self._next_read += 1
                part = self._read(conn, index)
                with self._lock:
                    self._read_parts[index] = part
                    if self._writing:
                        continue  # the writing thread finds it before it stops
                    self._writing = True
                self._write_ready()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Let no thread read or write another part (an error, or the answer is not wanted)."""
        with self._lock:
            self._stopped = True

    def _write_ready(self) -> None:
        """Write the parts next in order that are read; finish the answer after the last."""
        while True:
            with self._lock:
                part = None if self._stopped else self._read_parts.pop(self._next_write, None)
                if part is None:
                    self._writing = False
                    return
                self._next_write += 1
                last = self._next_write == self.count
            self._sink.write(part)
            if last:
                self.done.set_result(self._sink.finish())
                return


class Planned(Protocol):
    """What the first thread of a read answers: the parts to read, None when there are none
    to read (the handler answers from the rest of it)."""

    @property
    def parts(self) -> OrderedParts | None:
        """Return the parts the answer is made of."""


P = TypeVar("P", bound=Planned)


async def read_in_order(
    store: Store,
    plan: Callable[[sqlite3.Connection | None], P],
    threads: int,
    lane_threads: int,
) -> P:
    """Run plan(conn) in a range-read thread, then read its parts on up to `threads` threads.

    The first thread is one range read, refused as any (StoreBusyError) when the lane is full.
    Once it has planned, others are asked for, each a range read of its own, only while the
    lane (of lane_threads, PCW_RANGE_READERS) has a thread idle: they never take a waiting
    place from another answer. One refused or still waiting when the parts are read is done
    without. An error of any thread is the answer's. Without the file (yet), plan(None) runs in
    a worker thread. Return the plan once its parts, if any, are written: plan.parts.done then
    holds the answer.
    """
    loop = asyncio.get_running_loop()
    helpers: list[asyncio.Future[None]] = []
    planned: list[OrderedParts] = []

    def start_helpers(parts: OrderedParts) -> None:  # on the event loop
        for _ in range(min(threads, parts.count) - 1):
            if store.held(long=True) >= lane_threads:
                return
            helper = asyncio.ensure_future(store.call(parts.work, None, long=True))
            helper.add_done_callback(_retrieved)
            helpers.append(helper)

    def first(conn: sqlite3.Connection | None) -> P:
        answer = plan(conn)
        parts = answer.parts
        if parts is not None:
            planned.append(parts)
            if conn is not None:
                loop.call_soon_threadsafe(start_helpers, parts)
            parts.work(conn)
        return answer

    try:
        answer = await store.call(first, None, long=True)
        if answer is None:  # no file yet
            answer = await asyncio.to_thread(first, None)
        parts = answer.parts
        if parts is None:
            return answer
        done = asyncio.wrap_future(parts.done)
        waiting: set[asyncio.Future[object]] = {done, *helpers}
        while not parts.done.done():
            finished, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            for helper in finished - {done}:
                error = helper.exception()
                if error is not None and not isinstance(error, StoreBusyError):
                    raise error
            if waiting == {done} and not parts.done.done():
                # every thread is done, yet a part is not written
                raise StoreError(f"cannot read {store.db_path}: the read stopped short")
        return answer
    finally:
        for parts in planned:
            parts.stop()  # no effect once done; else no thread reads on for an answer not sent


def _retrieved(call: asyncio.Future[None]) -> None:
    """Mark a call's outcome seen: the answer may be sent before a late thread's call ends."""
    if not call.cancelled():
        call.exception()
