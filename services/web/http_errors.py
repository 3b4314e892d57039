"""Errors met answering requests: counted by kind for /metrics, logged one line per kind a minute.

Two sources. The app's own (json_errors: a query over its time limit, an unreadable database, a
full read queue, a bug) call ErrorLog.record. aiohttp's (a request line or header over its limits,
too many headers, bytes that are not HTTP) are answered by aiohttp before any handler or
middleware runs, and logged by it with a traceback each: the app gives aiohttp a logger
(ServerLog, through handler_args) that turns those into ErrorLog records, and a request class
whose response hook makes aiohttp's plain-text answer a JSON error with the security headers.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
from collections.abc import Iterator
from typing import Any

import msgspec
from aiohttp import hdrs, web
from aiohttp.http_exceptions import HttpProcessingError
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

from common.throttle import ThrottledLog
from services.web.headers import SECURITY_HEADERS

logger = logging.getLogger(__name__)

ERROR_LOG_EVERY_S = 60.0
MAX_KINDS = 64  # kinds come from the code, not the client; a bound all the same
OTHER_KIND = "other"
MAX_REASON_CHARS = 120
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


def kind_of(error: BaseException) -> str:
    """Return an error's kind for a metric label: its class name in snake case."""
    return _CAMEL_BOUNDARY.sub("_", type(error).__name__).lower()


class ErrorLog:
    """Count errors by kind (for /metrics) and log at most one line per kind per every_s."""

    def __init__(self, log: logging.Logger = logger, every_s: float = ERROR_LOG_EVERY_S) -> None:
        self.counts: dict[str, int] = {}
        self._throttle = ThrottledLog(log, every_s, max_kinds=MAX_KINDS)

    def record(self, kind: str, level: int, msg: str, *args: Any, exc_info: Any = None) -> None:
        """Count one error of `kind`; log msg % args unless a line of its kind went out lately."""
        if kind not in self.counts and len(self.counts) >= MAX_KINDS:
            kind = OTHER_KIND
        self.counts[kind] = self.counts.get(kind, 0) + 1
        self._throttle.log(kind, level, msg, *args, exc_info=exc_info)


ERRORS = web.AppKey("http_errors", ErrorLog)


class ServerLog(logging.LoggerAdapter):
    """The logger aiohttp's connection handler uses: its errors go to an ErrorLog, one line each.

    A request aiohttp cannot read is the client's fault: a warning without a traceback. Anything
    else it reports keeps its traceback, throttled the same way. Its debug lines pass through.
    """

    def __init__(self, errors: ErrorLog) -> None:
        super().__init__(logging.getLogger("aiohttp.server"), {})
        self._errors = errors

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        """Record an error aiohttp logs with exc_info; pass other lines through unchanged."""
        exc_info = kwargs.pop("exc_info", None)
        if isinstance(exc_info, BaseException):
            error: BaseException | None = exc_info
        else:
            error = sys.exc_info()[1] if exc_info else None
        if error is None:
            self.logger.log(level, msg, *args, **kwargs)
            return
        text = str(msg) % args if args else str(msg)
        if isinstance(error, HttpProcessingError):
            words = " ".join(str(error.message).split())[:MAX_REASON_CHARS]
            reason = "".join(char if char.isprintable() else "?" for char in words)
            # aiohttp logs a first request that is not HTTP (TLS to the HTTP port) at DEBUG
            self._errors.record(
                kind_of(error),
                logging.DEBUG if level <= logging.DEBUG else logging.WARNING,
                "%s: a request that could not be read, answered 400 (%s: %s)",
                text,
                kind_of(error),
                reason,
            )
        else:
            self._errors.record(kind_of(error), logging.ERROR, "%s", text, exc_info=error)


class _ServedRequest(web.Request):
    """A request whose answer gets the security headers even when no route was matched.

    aiohttp answers a request it could not read itself, outside routing, so the app's
    on_response_prepare signal never sees that answer: this hook gives it the headers and turns
    its plain-text body (which echoes part of the request) into the API's JSON error.
    """

    async def _prepare_hook(self, response: web.StreamResponse) -> None:
        await super()._prepare_hook(response)
        if self._match_info is not None:  # routed: the app's signal has set the headers
            return
        response.headers.update(SECURITY_HEADERS)
        if isinstance(response, web.Response) and response.status >= 400:
            body = msgspec.json.encode(
                {"error": f"{response.reason}: the request could not be read"}
            )
            response.body = body
            response.headers[hdrs.CONTENT_TYPE] = "application/json"
            response.headers[hdrs.CONTENT_LENGTH] = str(len(body))


def setup_server_errors(app: web.Application) -> None:
    """Make aiohttp's own answers to unreadable requests JSON errors with the security headers."""
    # aiohttp offers no public hook for these answers; Application._make_request takes the
    # request class (`_cls`) for this purpose. tests/web/test_edges.py pins the result.
    app._make_request = functools.partial(  # type: ignore[method-assign]
        app._make_request, _cls=_ServedRequest
    )


class ErrorCollector(Collector):
    """Collect pycudawatch_http_errors_total{kind} from an ErrorLog."""

    def __init__(self, errors: ErrorLog) -> None:
        self._errors = errors

    def collect(self) -> Iterator[Metric]:
        """Yield the one counter family, a sample per kind met so far."""
        family = CounterMetricFamily(
            "pycudawatch_http_errors",
            "Errors the web process met answering requests, by kind (each kind is logged at most"
            " once a minute).",
            labels=["kind"],
        )
        for kind, count in sorted(self._errors.counts.items()):
            family.add_metric([kind], count)
        yield family
