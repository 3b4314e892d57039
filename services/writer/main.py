"""The writer process: subscribe to samplers, batch ticks into SQLite, purge and VACUUM hourly."""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import time
from collections.abc import Callable
from types import FrameType

import zmq

from common.config import Config, startup_config
from common.messages import MAX_MESSAGE_BYTES, TOPIC, DecodeError, Tick
from common.schedule import AlignedSchedule
from common.status import WriterStatus, write_status
from services.writer.batch import PendingBatch
from services.writer.store import Store

log = logging.getLogger("services.writer")

MAX_BATCH_ROWS = 5000
MAX_BATCH_AGE_S = 0.5
MAX_BUFFERED_TICKS = 20_000
STATUS_EVERY_S = 5.0
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
MALFORMED_LOG_EVERY_S = 10.0
STOP_FLUSH_BUDGET_S = 20.0  # within supervisord's stopwaitsecs (30 s)
MAX_POLL_S = 1.0


class Writer:
    """The writer loop as steps, each returning whether it did work; tests call them directly."""

    def __init__(
        self,
        config: Config,
        socket: zmq.Socket,
        store: Store,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.socket = socket
        self.store = store
        self.wall = wall
        self.monotonic = monotonic
        self.batch = PendingBatch(MAX_BATCH_ROWS, MAX_BATCH_AGE_S, MAX_BUFFERED_TICKS)
        self.maintenance = AlignedSchedule(config.maintenance_s, wall, monotonic)
        self.maintenance_due = self.maintenance.next_tick()[1]
        self.stopping = False
        self.failures = 0
        self.retry_at = 0.0
        self.status_at = 0.0
        self.malformed = 0
        self._malformed_logged_at = -MALFORMED_LOG_EVERY_S
        self._malformed_unlogged = 0
        self.stored_ticks = 0
        self.stored_readings = 0
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.last_flush_ts: float | None = None
        self.last_maintenance_ts: float | None = None
        self.started_ts = wall()

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Ask the loop to flush and exit (signal handler: only sets a flag)."""
        log.info("signal %d: flushing and stopping", signum)
        self.stopping = True

    # -- steps -----------------------------------------------------------------------------

    def receive(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for messages and take every one that has arrived."""
        if not self.socket.poll(max(0, int(timeout_s * 1000))):
            return False
        while True:
            try:
                frames = self.socket.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return True
            self.accept(frames)

    def accept(self, frames: list[bytes]) -> bool:
        """Decode one message into the batch; count and drop it if malformed."""
        try:
            tick = Tick.from_frames(frames)
        except DecodeError as error:
            self._malformed(error)
            return False
        self.batch.add(tick, self.monotonic())
        return True

    def flush(self, force: bool = False) -> bool:
        """Commit the held ticks when due (or forced); on a DB error keep them and back off."""
        now = self.monotonic()
        if not len(self.batch) or now < self.retry_at or not (force or self.batch.is_due(now)):
            return False
        ticks = self.batch.peek()
        started = time.perf_counter()
        try:
            rows = self.store.write(ticks)
        except (sqlite3.Error, OSError) as error:
            self._failed(f"cannot store readings: {error}")
            return False
        self.batch.commit(len(ticks))
        self.stored_ticks += len(ticks)
        self.stored_readings += rows
        self.last_flush_ts = self.wall()
        if self.failures:
            log.info("database writable again: stored %d held ticks", len(ticks))
            self.failures, self.last_error = 0, None
            self.report_status(force=True)
        log.debug("stored %d readings in %.1f ms", rows, 1000 * (time.perf_counter() - started))
        return True

    def maintain(self) -> bool:
        """Purge readings past the retention, then VACUUM, when the aligned slot has come."""
        if self.monotonic() < self.maintenance_due:
            return False
        self.maintenance_due = self.maintenance.next_tick()[1]
        cutoff_ts = self.wall() - self.config.retention_s
        try:
            result = self.store.purge(cutoff_ts)
        except (sqlite3.Error, OSError) as error:
            self._failed(f"purge failed: {error}")
            return False
        self.last_maintenance_ts = self.wall()
        log.info(
            "purged %d readings older than %.4g days in %.2f s; file %d -> %d bytes",
            result.rows_deleted,
            self.config.retention_days,
            result.seconds,
            result.bytes_before,
            result.bytes_after,
        )
        return True

    def report_status(self, force: bool = False) -> bool:
        """Write the status file for /healthz every few seconds (or now, when forced)."""
        now = self.monotonic()
        if not force and now < self.status_at:
            return False
        self.status_at = now + STATUS_EVERY_S
        try:
            write_status(self.config.db_path, self.status())
        except OSError as error:
            log.warning("cannot write the status file: %s", error)
            return False
        return True

    def status(self) -> WriterStatus:
        """Return the writer's current status."""
        return WriterStatus(
            state="degraded" if self.failures else "ok",
            updated_ts=self.wall(),
            started_ts=self.started_ts,
            buffered_ticks=len(self.batch),
            stored_ticks=self.stored_ticks,
            stored_readings=self.stored_readings,
            malformed_messages=self.malformed,
            dropped_ticks=self.batch.dropped_ticks,
            last_error=self.last_error,
            last_error_ts=self.last_error_ts,
            last_flush_ts=self.last_flush_ts,
            last_maintenance_ts=self.last_maintenance_ts,
        )

    # -- the loop ----------------------------------------------------------------------------

    def step(self) -> None:
        """Run one round: receive until something is due, then flush, maintain, report."""
        now = self.monotonic()
        deadlines = [self.maintenance_due, self.status_at, now + MAX_POLL_S]
        if len(self.batch):
            deadlines.append(max(self.batch.due_at() or now, self.retry_at))
        self.receive(max(0.0, min(deadlines) - now))
        while self.flush():
            pass
        self.maintain()
        self.report_status()

    def run(self) -> None:
        """Step until asked to stop, then take what has arrived and flush it all."""
        self.report_status(force=True)
        while not self.stopping:
            self.step()
        self.shutdown()

    def shutdown(self) -> None:
        """Store everything held, retrying within the stop budget; report what could not be."""
        while self.receive(0):
            pass
        deadline = self.monotonic() + STOP_FLUSH_BUDGET_S
        while len(self.batch) and self.monotonic() < deadline:
            self.retry_at = min(self.retry_at, self.monotonic())
            if not self.flush(force=True):
                time.sleep(0.2)
        if len(self.batch):
            log.error("stopping with %d ticks not stored: %s", len(self.batch), self.last_error)
        self.report_status(force=True)
        self.store.close()
        log.info(
            "writer stopped: %d ticks, %d readings stored", self.stored_ticks, self.stored_readings
        )

    # -- errors ------------------------------------------------------------------------------

    def _failed(self, message: str) -> None:
        delay_s = RETRY_BACKOFF_S[min(self.failures, len(RETRY_BACKOFF_S) - 1)]
        self.failures += 1
        self.retry_at = self.monotonic() + delay_s
        self.store.close()
        if message != self.last_error:
            log.error("%s; holding %d ticks, retrying in %.1f s", message, len(self.batch), delay_s)
        self.last_error, self.last_error_ts = message, self.wall()
        self.report_status(force=True)

    def _malformed(self, error: DecodeError) -> None:
        self.malformed += 1
        self._malformed_unlogged += 1
        now = self.monotonic()
        if now - self._malformed_logged_at >= MALFORMED_LOG_EVERY_S:
            log.warning(
                "dropped %d malformed message(s), latest: %s", self._malformed_unlogged, error
            )
            self._malformed_logged_at, self._malformed_unlogged = now, 0


def subscribe(context: zmq.Context, endpoints: tuple[str, ...]) -> zmq.Socket:
    """Return a SUB socket connected to every sampler endpoint."""
    socket = context.socket(zmq.SUB)
    socket.setsockopt(zmq.LINGER, 0)
    socket.setsockopt(zmq.RCVHWM, 100_000)
    socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
    socket.setsockopt(zmq.SUBSCRIBE, TOPIC)
    for endpoint in endpoints:
        socket.connect(endpoint)
    return socket


def main() -> int:
    """Run the writer; return the process exit status."""
    config = startup_config(os.environ, "writer")
    if config is None:
        return 2
    with zmq.Context() as context, subscribe(context, config.subscribe) as socket:
        writer = Writer(config, socket, Store(config.db_path))
        signal.signal(signal.SIGTERM, writer.request_stop)
        signal.signal(signal.SIGINT, writer.request_stop)
        log.info(
            "writer subscribed to %s, storing in %s", ", ".join(config.subscribe), config.db_path
        )
        writer.run()
    return 0
