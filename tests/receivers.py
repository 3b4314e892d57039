"""Real notification receivers on loopback: a JSON webhook server and an SMTP server.

Each records what arrives with its arrival time (UTC epoch seconds), so that a test can say what
a user would have received, how often, and how long after the reading that caused it. Both pull
the notification's idempotency key (`notification key: pcw-...`, the body's last line) out of
the message, as a receiver that drops duplicates would.
"""

from __future__ import annotations

import email
import json
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

from aiosmtpd.controller import Controller

from tests.stack import free_port

KEY_LINE = re.compile(r"^notification key: (pcw-[0-9a-f]+)$", re.MULTILINE)
HOLD_LIMIT_S = 60.0  # a held request is answered after this at the latest


def key_of(text: str) -> str | None:
    """Return the idempotency key on the last line of a notification's body, None without one."""
    lines = text.strip().splitlines()
    found = KEY_LINE.match(lines[-1].strip()) if lines else None
    return found.group(1) if found else None


@dataclass(frozen=True)
class Arrival:
    """One notification as it arrived: when (epoch s), its title, body, key and its raw fields
    (a webhook's JSON object; an e-mail's From and To)."""

    ts: float
    title: str
    body: str
    key: str | None
    fields: dict[str, object]


class Received:
    """What a receiver took, in arrival order (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._arrivals: list[Arrival] = []

    def add(self, arrival: Arrival) -> None:
        with self._lock:
            self._arrivals.append(arrival)

    @property
    def arrivals(self) -> list[Arrival]:
        with self._lock:
            return list(self._arrivals)

    def keys(self) -> Counter[str | None]:
        """Return how many times each key arrived."""
        return Counter(arrival.key for arrival in self.arrivals)

    def first_ts(self) -> dict[str, float]:
        """Return when each key first arrived (epoch s)."""
        first: dict[str, float] = {}
        for arrival in self.arrivals:
            if arrival.key is not None:
                first.setdefault(arrival.key, arrival.ts)
        return first

    def titled(self, text: str) -> list[Arrival]:
        """Return the arrivals whose title holds text."""
        return [arrival for arrival in self.arrivals if text in arrival.title]


class _Server(ThreadingHTTPServer):
    allow_reuse_address = True  # open() again at once after close()
    daemon_threads = True


class WebhookReceiver(Received):
    """An HTTP server on 127.0.0.1 that takes Apprise's `json://` POSTs.

    status: what it answers (503: a receiver that is down but listening). close() and open()
    take its port away and give it back (a receiver whose host is down). hold(): the next
    requests are recorded on arrival, then left unanswered until release() (a receiver that
    hangs mid-request).
    """

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.status = 200
        self.posts = 0  # requests seen, answered or not
        self.arrived = threading.Event()  # set at each recorded arrival
        self._held = threading.Event()
        self._held.set()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Return the Apprise URL of this receiver."""
        return f"json://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> WebhookReceiver:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
        self.close()

    def open(self) -> None:
        """Listen on the port (again)."""
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length)
                receiver.count_post()
                if receiver.status == 200:
                    payload = json.loads(raw)
                    message = str(payload.get("message", ""))
                    title = str(payload.get("title", ""))
                    receiver.add(Arrival(time.time(), title, message, key_of(message), payload))
                    receiver.arrived.set()
                receiver._held.wait(HOLD_LIMIT_S)
                try:
                    self.send_response(receiver.status)
                    self.end_headers()
                except OSError:  # the sender is gone (killed mid-request)
                    pass

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = _Server(("127.0.0.1", self.port), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def count_post(self) -> None:
        with self._lock:
            self.posts += 1

    def close(self) -> None:
        """Stop listening: a connection to the port is refused."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None

    def hold(self) -> None:
        """Leave the next requests unanswered (after recording them) until release()."""
        self.arrived.clear()
        self._held.clear()

    def release(self) -> None:
        """Answer the held requests, and the next ones at once."""
        self._held.set()


class _SmtpHandler:
    """aiosmtpd's handler: record each message's subject and plain-text body."""

    def __init__(self, received: SmtpReceiver) -> None:
        self.received = received

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=policy.default)  # type: ignore[attr-defined]
        assert isinstance(message, EmailMessage)
        part = message.get_body(("plain",))
        text = part.get_content() if part is not None else ""
        self.received.messages.append(message)
        fields = {"from": str(message["From"]), "to": str(message["To"])}
        self.received.add(Arrival(time.time(), str(message["Subject"]), text, key_of(text), fields))
        return "250 Message accepted for delivery"


class SmtpReceiver(Received):
    """A real SMTP server (aiosmtpd) on 127.0.0.1, no TLS, no login; it keeps every message."""

    def __init__(self) -> None:
        super().__init__()
        self.port = free_port()
        self.messages: list[EmailMessage] = []
        self._controller = Controller(_SmtpHandler(self), hostname="127.0.0.1", port=self.port)

    def url(self, from_addr: str, to_addr: str) -> str:
        """Return the Apprise `mailto://` URL that sends to this server in plain SMTP."""
        return f"mailto://127.0.0.1:{self.port}?mode=insecure&from={from_addr}&to={to_addr}"

    def __enter__(self) -> SmtpReceiver:
        self._controller.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._controller.stop()
