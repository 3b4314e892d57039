"""Send the outbox: a thread of the writer process that delivers each stored notification.

- Nothing lost: a notification is in the file before any try (written with the transition that
  caused it); a try that fails is retried with doubling waits (5 s up to
  PCW_NOTIFY_RETRY_MAX_S) until the target takes it, across restarts of the process; it is
  given up only PCW_NOTIFY_GIVE_UP_S after it was stored, counted and shown.
- Sent once: a delivery is marked sent in the file right after its target took it. A process
  killed in between sends it again after its restart, with the same idempotency key in its
  body, by which a receiver knows it.
- An alert silenced when its message is due is not sent (marked silenced).
- When the file cannot be written (the writer degraded), a message handed to direct() is sent
  from memory, once per target, with the same retries while the process lives.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from services.alerts.engine import Notification
from services.alerts.text import body, title
from services.writer import outbox
from services.writer.store import connect

if TYPE_CHECKING:  # apprise loads only where targets are set
    from services.alerts.targets import Targets

log = logging.getLogger(__name__)

FIRST_RETRY_S = 5.0
BATCH = 16
IDLE_WAIT_S = 1.0
DIRECT_MAX = 64  # messages held in memory while the file fails; the oldest goes first


class Sender:
    """Deliver the outbox's messages from a thread; tests call step() directly."""

    def __init__(
        self,
        db_path: Path,
        targets: Targets,
        retry_max_s: float,
        give_up_s: float,
        clock: Callable[[], float] = time.time,
        connect: Callable[[Path], sqlite3.Connection] | None = None,
    ) -> None:
        self.db_path = db_path
        self.targets = targets
        self.retry_max_s = retry_max_s
        self.give_up_s = give_up_s
        self.clock = clock
        self._connect = connect
        self._conn: sqlite3.Connection | None = None
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._direct: deque[tuple[Notification, list[str], int, float]] = deque(maxlen=DIRECT_MAX)
        self._lock = threading.Lock()
        # tries made whose result the file could not take yet: written first, never re-sent
        self._unsettled: dict[tuple[int, str], tuple[outbox.Due, tuple, dict]] = {}
        self.sent = 0
        self.retried = 0
        self.given_up = 0
        self.silenced = 0

    # -- the thread --------------------------------------------------------------------------

    def start(self) -> None:
        """Run the sending in a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="sender", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Look at the outbox now: a notification was just stored."""
        self._wake.set()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread after the try in progress."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def _run(self) -> None:
        while not self._stopping.is_set():
            wait_s = self.step()
            self._wake.wait(wait_s)
            self._wake.clear()

    # -- steps -------------------------------------------------------------------------------

    def step(self) -> float:
        """Fan out new messages, try the due ones; return how long to wait before the next look."""
        wait_s = self._send_direct()
        try:
            conn = self._connection()
            self._write_unsettled(conn)
            outbox.fan_out(conn, self.targets, self.clock(), self.give_up_s)
            while not self._stopping.is_set():
                items = [
                    item
                    for item in outbox.due(conn, self.clock(), BATCH)
                    if (item.notification_id, item.target) not in self._unsettled
                ]
                for item in items:
                    self._try(conn, item)
                if len(items) < BATCH:
                    break
            next_ts = outbox.next_due_ts(conn)
        except (sqlite3.Error, OSError) as error:
            log.warning("cannot use the outbox, trying again in %.0f s: %s", IDLE_WAIT_S, error)
            self._close()
            return IDLE_WAIT_S
        if next_ts is not None:
            wait_s = min(wait_s, max(0.0, next_ts - self.clock()))
        return min(wait_s, IDLE_WAIT_S)

    def _try(self, conn: sqlite3.Connection, item: outbox.Due) -> None:
        """Try one delivery. The try is recorded before the send, with when to try again should
        the process die during it: a try that cannot be recorded is not made."""
        now_ts = self.clock()
        target = self.targets.by_id.get(item.target)
        if target is None:
            outbox.settle(conn, item, "given_up", now_ts, error="target no longer configured")
            self.given_up += 1
            return
        if outbox.silenced(conn, item, now_ts):
            outbox.settle(conn, item, "silenced", now_ts)
            self.silenced += 1
            return
        attempts = item.attempts + 1
        retry_s = self.retry_delay_s(attempts)
        outbox.begin_try(conn, item, now_ts + retry_s)
        took = self._send(item.target, item.title, item.body, item.severity, item.kind)
        now_ts = self.clock()
        if took:
            self._settle(conn, item, "sent", now_ts)
            self.sent += 1
            log.info("notification %d sent to %s", item.notification_id, target.shown)
            return
        if now_ts - item.created_ts >= self.give_up_s:
            self._settle(conn, item, "given_up", now_ts, error="the target did not take it")
            self.given_up += 1
            log.error(
                "gave up notification %d to %s after %d tries over %.0f s",
                item.notification_id,
                target.shown,
                attempts,
                now_ts - item.created_ts,
            )
            return
        self._settle(conn, item, "queued", now_ts, now_ts + retry_s, "the target did not take it")
        self.retried += 1
        log.warning(
            "notification %d to %s failed (try %d), next try in %.1f s",
            item.notification_id,
            target.shown,
            attempts,
            retry_s,
        )

    def _settle(
        self, conn: sqlite3.Connection, item: outbox.Due, *result: object, **more: object
    ) -> None:
        """Record a try's result; one the file cannot take now is kept, and never tried again."""
        try:
            outbox.settle(conn, item, *result, **more)
        except sqlite3.Error as error:
            log.warning(
                "cannot record notification %d's try yet, holding it: %s",
                item.notification_id,
                error,
            )
            self._unsettled[(item.notification_id, item.target)] = (item, result, more)

    def _write_unsettled(self, conn: sqlite3.Connection) -> None:
        for key, (item, result, more) in list(self._unsettled.items()):
            outbox.settle(conn, item, *result, **more)  # raises while the file still fails
            del self._unsettled[key]

    def retry_delay_s(self, attempts: int) -> float:
        """Return the wait after the attempts-th failed try: 5 s, 10 s, 20 s ... up to the max."""
        return min(FIRST_RETRY_S * 2 ** (attempts - 1), self.retry_max_s)

    def _send(
        self, target_id: str, title_text: str, body_text: str, severity: str, kind: str
    ) -> bool:
        try:
            return self.targets.send(target_id, title_text, body_text, severity, kind == "resolved")
        except Exception:  # a plugin's bug must not end the sending of every other message
            log.exception("sending to %s raised", self.targets.by_id[target_id].shown)
            return False

    # -- from memory, while the file fails ---------------------------------------------------

    def direct(self, notifications: list[Notification]) -> None:
        """Send messages that could not be stored, from memory (at most DIRECT_MAX held)."""
        with self._lock:
            for notification in notifications:
                ids = [t.target_id for t in self.targets.taking(notification.alert.severity)]
                self._direct.append((notification, ids, 0, self.clock()))
        self._wake.set()

    def _send_direct(self) -> float:
        with self._lock:
            held = list(self._direct)
            self._direct.clear()
        wait_s = IDLE_WAIT_S
        kept = []
        for notification, target_ids, attempts, due_ts in held:
            if due_ts > self.clock():
                kept.append((notification, target_ids, attempts, due_ts))
                wait_s = min(wait_s, due_ts - self.clock())
                continue
            left = [
                target_id
                for target_id in target_ids
                if not self._send(
                    target_id,
                    title(notification),
                    body(notification),
                    notification.alert.severity,
                    notification.kind,
                )
            ]
            self.sent += len(target_ids) - len(left)
            if left:
                self.retried += len(left)
                kept.append(
                    (
                        notification,
                        left,
                        attempts + 1,
                        self.clock() + self.retry_delay_s(attempts + 1),
                    )
                )
        with self._lock:
            self._direct.extendleft(reversed(kept))
        return max(0.0, wait_s)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            self._conn = (self._connect or connect)(self.db_path)
        return self._conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
