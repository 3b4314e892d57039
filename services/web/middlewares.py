"""Middlewares: JSON for every error (a logged 500 only as the last resort), gzip, cache headers."""

from __future__ import annotations

import asyncio
import logging
import zlib
from pathlib import Path, PurePosixPath

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from aiohttp.web_response import ContentCoding

from services.web.http_errors import ERRORS
from services.web.keys import COUNTERS
from services.web.replies import error_reply
from services.web.store import QueryTimeoutError, StoreBusyError, StoreError

COMPRESS_MIN_BYTES = 1024
# Bodies over this are gzipped in a thread: ~0.4 ms at 64 KiB, but ~12 ms for a 2 MB history
# answer, which would hold every websocket and request of the event loop meanwhile.
COMPRESS_IN_THREAD_BYTES = 64 * 1024
STATIC_PREFIX = "/static/"
# Asked for by a versioned URL: url('static', filename=...) in a template adds ?v=<hash of the
# file>, and the built modules import each other with ?v=<build version> (scripts/asset_build.py),
# so a changed file always comes by a new URL and one URL's bytes never change: kept a year,
# never revalidated.
STATIC_VERSIONED_CACHE_CONTROL = "public, max-age=31536000, immutable"
STATIC_VERSION_PARAM = "v"
# Any other static URL (the readable modules, which import each other without ?v=) is asked
# again on every load, a 304 while the ETag matches: a new entry never meets an old module.
STATIC_CACHE_CONTROL = "no-cache"
COMPRESSIBLE_TYPES = frozenset(
    ("application/json", "text/html", "text/plain", "text/css", "text/javascript")
)
COMPRESSIBLE_SUFFIXES = frozenset((".js", ".mjs", ".css", ".html", ".svg", ".json", ".map", ".txt"))
MAX_PATH_SHOWN_CHARS = 200


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer every error as {"error": ...}; turn an unexpected exception into a logged 500."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        if error.status < 400:
            raise
        headers = {
            name: value
            for name, value in error.headers.items()
            if name not in (hdrs.CONTENT_TYPE, hdrs.CONTENT_LENGTH)
        }
        path = request.path[:MAX_PATH_SHOWN_CHARS]
        return error_reply(f"{error.reason}: {request.method} {path}", error.status, headers)
    except StoreBusyError as error:
        _record(request, "busy", logging.WARNING, error)
        retry_after = {hdrs.RETRY_AFTER: str(error.retry_after_s)}
        return error_reply(f"{error} (in {error.retry_after_s} s)", 503, retry_after)
    except QueryTimeoutError as error:
        _record(request, "query_timeout", logging.WARNING, error)
        return error_reply(f"{error}; ask for a shorter range or fewer GPUs", 503)
    except StoreError as error:
        _record(request, "database", logging.WARNING, error)
        return error_reply(str(error), 503)
    except Exception as error:
        # The last resort: a bug. Tests check that no input reaches this line.
        request.app[COUNTERS].internal_errors += 1
        _record(request, "internal", logging.ERROR, error, exc_info=True)
        return error_reply("internal error; the web process's log has the details", 500)


def _record(
    request: web.Request, kind: str, level: int, error: Exception, exc_info: bool = False
) -> None:
    """Count the error; log it one line per kind a minute, as a client can cause one per request."""
    path = request.path[:MAX_PATH_SHOWN_CHARS]
    request.app[ERRORS].record(
        kind, level, "%s %s: %s", request.method, path, error, exc_info=exc_info
    )


@web.middleware
async def compress_and_cache(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Gzip text answers over COMPRESS_MIN_BYTES; let browsers cache static files.

    A static file with a precompressed `NAME.gz` beside it is sent as that file by aiohttp itself.
    """
    response = await handler(request)
    if response.prepared:  # a websocket: its headers are long gone
        return response
    gzip_ok = accepts_gzip(request)
    if request.path.startswith(STATIC_PREFIX):
        if isinstance(response, web.FileResponse) and not await _static_file_exists(request):
            # aiohttp would answer an empty 404 when it opens the file, with the cache header
            raise web.HTTPNotFound()
        response.headers[hdrs.CACHE_CONTROL] = (
            STATIC_VERSIONED_CACHE_CONTROL
            if request.query.get(STATIC_VERSION_PARAM)
            else STATIC_CACHE_CONTROL
        )
        if (
            isinstance(response, web.FileResponse)
            and PurePosixPath(request.path).suffix.lower() in COMPRESSIBLE_SUFFIXES
        ):
            response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
            if gzip_ok and not _ranged_or_conditional(request):
                response.enable_compression(ContentCoding.gzip)
    elif (
        isinstance(response, web.Response)
        and response.content_type in COMPRESSIBLE_TYPES
        and isinstance(response.body, bytes)
        and len(response.body) > COMPRESS_MIN_BYTES
    ):
        response.headers[hdrs.VARY] = hdrs.ACCEPT_ENCODING
        # A handler that gzipped its answer while building it (views.history) sets the header.
        if gzip_ok and hdrs.CONTENT_ENCODING not in response.headers:
            body = response.body
            if len(body) > COMPRESS_IN_THREAD_BYTES:
                body = await asyncio.get_running_loop().run_in_executor(None, _gzip, body)
            else:
                body = _gzip(body)
            response.body = body
            response.headers[hdrs.CONTENT_ENCODING] = "gzip"
    return response


def accepts_gzip(request: web.Request) -> bool:
    """Return whether the client takes a gzipped answer (its Accept-Encoding names gzip)."""
    return "gzip" in request.headers.get(hdrs.ACCEPT_ENCODING, "").lower()


def gzip_compressor() -> zlib._Compress:
    """Return a compressor writing a gzip stream, at zlib level 1.

    A history answer of ~700 KB compresses 4x faster than at the default level, for a body about
    10% larger.
    """
    return zlib.compressobj(1, zlib.DEFLATED, 16 + zlib.MAX_WBITS)


def _gzip(body: bytes) -> bytes:
    """Return body as a gzip stream (gzip_compressor)."""
    compressor = gzip_compressor()
    return compressor.compress(body) + compressor.flush()


def _ranged_or_conditional(request: web.Request) -> bool:
    """Return whether a static answer may be a range or a 304, which get no on-the-fly gzip.

    aiohttp would write a gzip stream's header and trailer after a 304's headers, a body that
    breaks the connection; a file changed since the browser's copy is then sent uncompressed once.
    """
    return any(
        name in request.headers for name in (hdrs.RANGE, hdrs.IF_NONE_MATCH, hdrs.IF_MODIFIED_SINCE)
    )


async def _static_file_exists(request: web.Request) -> bool:
    """Return whether the static route's file is there (a stat, off the event loop)."""
    directory = request.match_info.route.resource.get_info().get("directory")
    if directory is None:
        return True
    path = Path(directory) / request.match_info.get("filename", "")
    return await asyncio.get_running_loop().run_in_executor(None, path.is_file)
