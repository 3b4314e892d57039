"""The writer process: subscribe to samplers, batch ticks into SQLite, purge and reclaim hourly."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Callable

import zmq

from common.config import Config, startup_config
from common.messages import DecodeError, Tick
from common.replay import ReplayError, ReplayRequest
from common.schedule import AlignedSchedule
from common.status import WriterStatus, status_endpoint, write_status
from common.throttle import ThrottledLog
from services.alerts.engine import Outcome
from services.alerts.evaluator import Evaluator
from services.alerts.rule_file import RuleFileError, load_rule_file
from services.alerts.rules import WRITER_DEGRADED
from services.transport.curve import CurveSetupError, gate, hub_keys
from services.transport.wakeup import StopFlag
from services.writer.batch import PendingBatch, held_bytes
from services.writer.legacy import LegacyImport
from services.writer.sender import Sender
from services.writer.sequences import SequenceTracker
from services.writer.sources import (
    Source,
    Watch,
    open_source,
    parse_end,
    retry_overdue,
    settle,
)
from services.writer.status_feed import StatusPublisher
from services.writer.store import Store, UnusableDatabaseError

log = logging.getLogger("services.writer")

MAX_BATCH_ROWS = 5000
MAX_BATCH_AGE_S = 0.5
STATUS_EVERY_S = 10.0
RETRY_BACKOFF_S = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)
REPEAT_LOG_EVERY_S = 10.0  # malformed messages, dropped ticks: a line of each kind per 10 s
MAINTENANCE_RETRY_S = 300.0
STOP_FLUSH_BUDGET_S = 20.0  # within supervisord's stopwaitsecs (30 s)
MAX_MESSAGES_PER_STEP = 10_000  # so that a flood never starves the flush
ALERT_CHECK_S = 1.0  # how often the hosts' staleness and the writer's own state are judged


class Writer:
    """The writer loop as steps, each returning whether it did work; tests call them directly."""

    def __init__(
        self,
        config: Config,
        sources: list[Source],
        store: Store,
        wall: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        status_feed: StatusPublisher | None = None,
        alerts: Evaluator | None = None,
        sender: Sender | None = None,
    ) -> None:
        self.config = config
        self.alerts = alerts
        self.sender = sender
        self.alerts_at = 0.0
        self.status_feed = status_feed
        self.sources = sources
        self.store = store
        self.poller = zmq.Poller()
        self.stop = StopFlag()
        self.stop.register(self.poller)
        self._by_socket: dict[zmq.Socket, Source] = {}
        self._watches: dict[zmq.Socket, Watch] = {}
        for source in sources:
            for socket in (source.subscriber, source.replayer):
                self.poller.register(socket, zmq.POLLIN)
                self._by_socket[socket] = source
            for each in source.watches:
                self.poller.register(each.monitor, zmq.POLLIN)
                self._watches[each.monitor] = each
        self.tracker = SequenceTracker(self._stored_positions())
        self.replay_due: float | None = None
        self.wall = wall
        self.monotonic = monotonic
        self.batch = PendingBatch(MAX_BATCH_ROWS, MAX_BATCH_AGE_S, config.writer_buffer_bytes)
        self.maintenance = AlignedSchedule(config.maintenance_s, wall, monotonic)
        self.maintenance_slot_ts, self.maintenance_due = self.maintenance.next_tick()
        self.failures = 0
        self.retry_at = 0.0
        self.status_at = 0.0
        self.malformed = 0
        self._throttled = ThrottledLog(log, REPEAT_LOG_EVERY_S, clock=monotonic)
        self._reopen_reported_ts: float | None = None
        self.stored_ticks = 0
        self.stored_readings = 0
        self.last_error: str | None = None
        self.last_error_ts: float | None = None
        self.last_flush_ts: float | None = None
        self.last_flush_duration_s: float | None = None
        self.last_maintenance_ts: float | None = None
        self.started_ts = wall()

    # -- steps -----------------------------------------------------------------------------

    def _stored_positions(self) -> dict[str, tuple[str, int]]:
        try:
            return self.store.positions()
        except (sqlite3.Error, OSError) as error:
            log.error("cannot read stored positions, replaying from live ticks only: %s", error)
            return {}

    def receive(self, timeout_s: float) -> bool:
        """Wait up to timeout_s for messages and take those that have arrived."""
        events = self.poller.poll(max(0, int(timeout_s * 1000)))
        taken = 0
        for socket, _ in events:
            if self.stop.is_source(socket):
                self.stop.drain()
                continue
            if socket in self._watches:
                self._watches[socket].take_events(self.monotonic())
                continue
            source = self._by_socket[socket]
            while taken < MAX_MESSAGES_PER_STEP:
                try:
                    frames = socket.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                taken += 1
                if socket is source.replayer:
                    self.accept_reply(frames, source)
                else:
                    self.accept(frames, source)
                if self.batch.full and self.monotonic() >= self.retry_at:
                    return True  # store this batch before taking more: a burst is never dropped
        return taken > 0

    def accept(self, frames: list[bytes], source: Source | None = None) -> bool:
        """Decode one tick into the batch; ask for any gap it reveals; drop it if malformed.

        Past one batch held decoded, the batch keeps the tick as its message (see batch.py).
        """
        try:
            tick = Tick.from_frames(frames)
        except DecodeError as error:
            self._malformed(error)
            return False
        gap = self.tracker.observe(tick.sampler_id, tick.host, tick.seq)
        position = self.tracker.runs[tick.sampler_id].position
        dropped = self.batch.add(tick, self.monotonic(), position, held_bytes(frames), frames)
        if dropped:
            self._dropped(dropped)
        if gap and source is not None:
            log.info(
                "ticks %d-%d of host %s missed: asking %s for them",
                *gap,
                tick.host,
                source.endpoint,
            )
            source.ask(ReplayRequest(tick.sampler_id, *gap), self.monotonic())
            self.replay_due = self.monotonic()
        return True

    def accept_reply(self, frames: list[bytes], source: Source) -> bool:
        """Take one message of a replay: a tick, or the end that settles the request."""
        try:
            end = parse_end(frames)
        except ReplayError as error:
            self._malformed(error)
            return False
        if end is None:
            return self.accept(frames, source)
        settle(source, end, self.tracker, self.monotonic())
        return True

    def restore_connections(self) -> bool:
        """Connect again to samplers whose connection libzmq dropped for good."""
        now = self.monotonic()
        restored = sum(each.restore_if_due(now) for each in self._watches.values())
        self.malformed += restored  # a protocol breach is a malformed message
        return restored > 0

    def retry_replays(self) -> bool:
        """Ask again for overdue replays; give up after enough tries."""
        now = self.monotonic()
        if self.replay_due is None or now < self.replay_due:
            return False
        dues = [retry_overdue(source, self.tracker, now) for source in self.sources]
        self.replay_due = min((due for due in dues if due is not None), default=None)
        return True

    def flush(self, force: bool = False) -> bool:
        """Commit the held ticks when due (or forced); on a DB error keep them and back off."""
        now = self.monotonic()
        if not len(self.batch) or now < self.retry_at or not (force or self.batch.is_due(now)):
            return False
        ticks = self.batch.peek()
        positions = self.batch.positions(len(ticks))
        started = time.perf_counter()
        try:
            judged = self._evaluate(ticks, positions)
            rows = self.store.write(ticks, positions, judged)
        except (sqlite3.Error, OSError) as error:
            if self.alerts is not None:
                self.alerts.failed()
            self._failed(f"cannot store readings: {error}")
            return False
        self._alerts_stored(judged)
        self.batch.commit(len(ticks))
        self.stored_ticks += len(ticks)
        self.stored_readings += rows
        self.last_flush_ts = self.wall()
        self.last_flush_duration_s = time.perf_counter() - started
        if self.failures:
            log.info("database writable again: stored %d held ticks", len(ticks))
            self.failures, self.last_error = 0, None
            self.report_status(force=True)
        elif self.store.reopened_ts != self._reopen_reported_ts:
            self.report_status(force=True)  # the file was replaced or deleted: say so now
        log.debug("stored %d readings in %.1f ms", rows, 1000 * (time.perf_counter() - started))
        return True

    def maintain(self) -> bool:
        """Purge readings past the retention and reclaim their space when the aligned slot comes."""
        if self.monotonic() < self.maintenance_due:
            return False
        self.maintenance.mark_done(self.maintenance_slot_ts)  # never the same slot twice
        self.maintenance_slot_ts, self.maintenance_due = self.maintenance.next_tick()
        cutoff_ts = self.wall() - self.config.retention_s
        try:
            result = self.store.purge(cutoff_ts, self.config.vacuum)
        except (sqlite3.Error, OSError) as error:
            self._failed(f"purge failed: {error}")
            self.maintenance_due = min(self.maintenance_due, self.monotonic() + MAINTENANCE_RETRY_S)
            return False
        self.last_maintenance_ts = self.wall()
        if self.alerts is not None:
            self.alerts.loaded = False  # read again: the purge took the alerts of gone hosts
        log.info(
            "purged %d readings older than %.4g days in %.2f s; file %d -> %d bytes (%s)",
            result.rows_deleted,
            self.config.retention_days,
            result.seconds,
            result.bytes_before,
            result.bytes_after,
            result.vacuum,
        )
        return True

    def _evaluate(self, ticks: list[Tick], positions: dict[str, tuple[str, int]]) -> Outcome | None:
        """Judge the ticks for alerts (raises what reading the stored alerts raises)."""
        if self.alerts is None:
            return None
        self._load_alerts()
        return self.alerts.evaluate(ticks, positions)

    def _load_alerts(self) -> None:
        """Read the stored alerts and positions into the evaluator, once (raises)."""
        if self.alerts is not None and not self.alerts.loaded:
            states, hosts = self.store.alert_state()
            cursors = {run: seq for run, (_host, seq) in self.store.positions().items()}
            self.alerts.load(states, cursors, hosts)

    def _alerts_stored(self, judged: Outcome | None) -> None:
        if self.alerts is None:
            return
        self.alerts.committed()
        if judged is not None and judged.notifications and self.sender is not None:
            self.sender.wake()

    def check_alerts(self) -> bool:
        """Every ALERT_CHECK_S: judge the ticks held past a gap that was given up since, the
        hosts' staleness and the writer's own state (also while the file cannot be read)."""
        now = self.monotonic()
        if self.alerts is None or now < self.alerts_at:
            return False
        self.alerts_at = now + ALERT_CHECK_S
        try:
            self._load_alerts()
        except (sqlite3.Error, OSError) as error:
            log.debug("cannot read the stored alerts yet: %s", error)
        if self.alerts.loaded and self.alerts.held:
            released = self.alerts.evaluate([], self.tracker.positions(), set(self.tracker.runs))
            self._store_judged(released)
        degraded = self.last_error if self.failures else None
        return self._store_judged(self.alerts.check_time(degraded))

    def _store_judged(self, judged: Outcome) -> bool:
        """Store alerts judged outside a batch of ticks; on failure keep them (see failed())."""
        assert self.alerts is not None
        if not judged:
            self.alerts.committed()
            return False
        try:
            self.store.write_alerts(judged)
        except (sqlite3.Error, OSError) as error:
            log.warning("cannot store alerts yet: %s", error)
            self.alerts.failed(keep_unsaved=frozenset({WRITER_DEGRADED}))
            direct = [n for n in judged.notifications if n.alert.rule == WRITER_DEGRADED]
            if direct and self.sender is not None:
                self.sender.direct(direct)
            return True
        self._alerts_stored(judged)
        return True

    def report_status(self, force: bool = False) -> bool:
        """Publish the status and write its file for /healthz every few seconds (or now, when
        forced); the socket first, since it needs no disk and the file may not be written."""
        now = self.monotonic()
        if not force and now < self.status_at:
            return False
        self.status_at = now + STATUS_EVERY_S
        status = self.status()
        self._reopen_reported_ts = status.db_reopened_ts
        if self.status_feed is not None:
            self.status_feed.publish(status)
        try:
            write_status(self.config.db_path, status)
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
            replay_gaps=self.tracker.gaps,
            lost_ticks=self.tracker.lost_ticks,
            last_error=self.last_error,
            last_error_ts=self.last_error_ts,
            last_flush_ts=self.last_flush_ts,
            last_flush_duration_s=self.last_flush_duration_s,
            last_maintenance_ts=self.last_maintenance_ts,
            buffered_bytes=self.batch.bytes,
            buffer_limit_bytes=self.batch.max_bytes,
            db_reopened_ts=self.store.reopened_ts,
            db_reopened_reason=self.store.reopened_reason,
        )

    # -- the loop ----------------------------------------------------------------------------

    def step(self) -> None:
        """Run one round: receive until something is due, then flush, maintain, report."""
        now = self.monotonic()
        deadlines = [self.maintenance_due, self.status_at]
        if self.alerts is not None:
            deadlines.append(self.alerts_at)
        if self.replay_due is not None:
            deadlines.append(self.replay_due)
        deadlines.extend(
            due for w in self._watches.values() if (due := w.breaches.next_due_s()) is not None
        )
        if len(self.batch):
            deadlines.append(max(self.batch.due_at() or now, self.retry_at))
        self.receive(max(0.0, min(deadlines) - now))
        while self.flush():
            pass
        self.retry_replays()
        self.restore_connections()
        self.maintain()
        self.check_alerts()
        self.report_status()

    def run(self) -> None:
        """Step until asked to stop, then take what has arrived and flush it all."""
        self.report_status(force=True)
        while not self.stop.stopping:
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
        if self.sender is not None:
            self.sender.stop()
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

    def _dropped(self, count: int) -> None:
        total = self._throttled.due("dropped", count)
        if total is not None:
            log.warning(
                "dropped the %d oldest unstored tick(s): the buffer holds %d bytes "
                "(PCW_WRITER_BUFFER_BYTES=%d) and the database still fails: %s",
                total,
                self.batch.bytes,
                self.batch.max_bytes,
                self.last_error,
            )

    def _malformed(self, error: DecodeError | ReplayError) -> None:
        self.malformed += 1
        total = self._throttled.due("malformed")
        if total is not None:
            log.warning("dropped %d malformed message(s), latest: %s", total, error)


def main() -> int:
    """Run the writer; return the process exit status."""
    config = startup_config(os.environ, "writer")
    if config is None:
        return 2
    try:
        keys = hub_keys(config)
    except CurveSetupError as error:
        log.critical("writer cannot start, bad setting: %s", error)
        return 2
    try:
        user_rules = (
            () if config.alert_rules_file is None else load_rule_file(config.alert_rules_file)
        )
    except RuleFileError as error:
        log.critical("writer cannot start, bad setting: PCW_ALERT_RULES_FILE: %s", error)
        return 2
    targets = None
    if config.notify_urls or config.notify_config is not None:
        # Apprise and its plugins load only here: a writer without targets starts as fast
        from services.alerts.targets import TargetError, load_targets

        try:
            targets = load_targets(config.notify_urls, config.notify_config)
        except TargetError as error:
            log.critical("writer cannot start, bad setting: %s", error)
            return 2
    store = Store(
        config.db_path,
        legacy=LegacyImport(config.host_name, config.retention_s),
        cache_bytes=config.writer_cache_bytes,
    )
    store.notify = targets is not None and len(targets) > 0
    try:
        store.open()
    except UnusableDatabaseError as reason:
        log.critical(
            "writer cannot start, bad setting: PCW_DB_PATH=%r cannot be opened as a "
            "pyCudaWatch database: %s",
            str(config.db_path),
            reason,
        )
        return 2
    with zmq.Context() as context, gate(context, keys):
        sources = [open_source(context, endpoint, keys) for endpoint in config.subscribe]
        status_feed = StatusPublisher(
            context, status_endpoint(config.status_endpoint, config.db_path)
        )
        sender = None
        if targets is not None and len(targets):
            sender = Sender(
                config.db_path, targets, config.notify_retry_max_s, config.notify_give_up_s
            )
            sender.start()
        alerts = Evaluator(config, user_rules)
        writer = Writer(
            config, sources, store, status_feed=status_feed, alerts=alerts, sender=sender
        )
        writer.stop.install()
        log.info(
            "writer subscribed to %s, storing in %s, status on %s",
            ", ".join(config.subscribe),
            config.db_path,
            status_feed.endpoint,
        )
        writer.run()
        for source in sources:
            source.close()
        status_feed.close()
    return 0
