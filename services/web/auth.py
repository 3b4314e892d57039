"""Optional HTTP basic auth over every route, with users and scrypt hashes from PCW_AUTH_FILE.

The file holds one `user:hash` line per user (blank lines and `#` comments are skipped); the
hash is `scrypt$N$r$p$salt$key` with base64 salt and key, as `python -m services.web.passwd USER`
prints it. Only the standard library hashes: hashlib.scrypt, and hmac.compare_digest to compare.

scrypt costs tens of milliseconds on purpose, so a verified Authorization header is remembered
(by its SHA-256, never the password) in a small bounded map, and checks are bounded: a few at a
time off the event loop, a bounded queue (then 503), one at a time per client address, and a
number of failures per address (then 429 until its lockout ends), all with Retry-After.

/healthz is the one partial exception: without credentials it answers only its status code and
{"status": "ok"} or {"status": "unhealthy"}, so that Docker's HEALTHCHECK (which cannot know a
password) keeps working, while the details (paths, host and GPU names) need a sign-in.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import logging
import math
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from services.web.http_errors import ErrorLog
from services.web.replies import error_reply, json_reply

log = logging.getLogger(__name__)

REALM = "pyCudaWatch"
CHALLENGE = f'Basic realm="{REALM}", charset="UTF-8"'
SCHEME = "scrypt"
# 16 MiB and ~50 ms per check: the parameters Python's docs and OWASP give for interactive use
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
KEY_BYTES = 32
MAX_N = 2**20
MAX_R = 32
MAX_P = 16
MAX_SCRYPT_MEMORY_BYTES = 2**31 - 1  # the most hashlib.scrypt (OpenSSL) accepts as maxmem
CACHE_SIZE = 128
VERIFY_AT_ONCE = 2
HEALTH_PATH = "/healthz"


class AuthFileError(ValueError):
    """PCW_AUTH_FILE cannot be used; the message names the file and the line."""


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _maxmem_bytes(n: int, r: int, p: int) -> int:
    return 132 * r * (n + p) + 2**20  # what scrypt needs (128 * r * (n + p)) and a margin


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=n,
        r=r,
        p=p,
        maxmem=_maxmem_bytes(n, r, p),
        dklen=length,
    )


def hash_password(password: str) -> str:
    """Return `scrypt$N$r$p$salt$key` for password, with a fresh random salt."""
    salt = secrets.token_bytes(SALT_BYTES)
    key = _scrypt(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, KEY_BYTES)
    return f"{SCHEME}${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(key)}"


@dataclass(frozen=True)
class PasswordHash:
    """A parsed `scrypt$N$r$p$salt$key` hash."""

    n: int
    r: int
    p: int
    salt: bytes
    key: bytes

    @classmethod
    def parse(cls, text: str) -> PasswordHash:
        """Parse a hash; raise ValueError saying what is wrong."""
        parts = text.strip().split("$")
        if len(parts) != 6 or parts[0] != SCHEME:
            raise ValueError(f"not a {SCHEME}$N$r$p$salt$key hash")
        try:
            n, r, p = (int(part) for part in parts[1:4])
            salt = base64.b64decode(parts[4], validate=True)
            key = base64.b64decode(parts[5], validate=True)
        except (ValueError, binascii.Error):
            raise ValueError("N, r and p must be integers, salt and key base64") from None
        if not (1 < n <= MAX_N and n & (n - 1) == 0 and 0 < r <= MAX_R and 0 < p <= MAX_P):
            raise ValueError(f"N must be a power of 2 up to {MAX_N}, r 1-{MAX_R}, p 1-{MAX_P}")
        if _maxmem_bytes(n, r, p) > MAX_SCRYPT_MEMORY_BYTES:
            raise ValueError("N x r is too large: scrypt would need over 2 GiB to check it")
        if not salt or len(key) < 16:
            raise ValueError("the salt is empty or the key shorter than 16 bytes")
        return cls(n, r, p, salt, key)

    def matches(self, password: str) -> bool:
        """Return whether password has this hash (a constant-time comparison)."""
        return hmac.compare_digest(
            _scrypt(password, self.salt, self.n, self.r, self.p, len(self.key)), self.key
        )


def load_users(path: Path) -> dict[str, PasswordHash]:
    """Read `user:hash` lines; raise AuthFileError naming the line of the first bad one."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # a BOM would be part of the first user
    except (OSError, UnicodeDecodeError) as error:
        raise AuthFileError(f"PCW_AUTH_FILE={str(path)!r} cannot be read: {error}") from None
    users: dict[str, PasswordHash] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, encoded = line.partition(":")
        where = f"PCW_AUTH_FILE={str(path)!r} line {number}"
        if not sep or not user:
            raise AuthFileError(f"{where}: not a user:hash line")
        if user in users:
            raise AuthFileError(f"{where}: user {user!r} appears twice")
        try:
            users[user] = PasswordHash.parse(encoded)
        except ValueError as error:
            raise AuthFileError(f"{where}: {error}") from None
    if not users:
        raise AuthFileError(f"PCW_AUTH_FILE={str(path)!r} holds no user:hash line")
    return users


def parse_basic(header: str) -> tuple[str, str] | None:
    """Return (user, password) from an Authorization header, None if it is not valid Basic."""
    scheme, _, token = header.strip().partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(token.strip(), validate=True).decode("utf-8")
    except ValueError:  # binascii.Error, a token that is not ASCII, or text that is not UTF-8
        return None
    user, sep, password = text.partition(":")
    return (user, password) if sep else None


@dataclass(frozen=True)
class SignInLimits:
    """How many password checks run and wait, and how many failures a client address may have."""

    at_once: int = VERIFY_AT_ONCE  # checks running at a time, each off the event loop
    queue: int = 16  # checks that may wait for one of those; more are answered 503
    failures: int = 10  # failed sign-ins per client address before it is answered 429
    lockout_s: float = 300.0  # counted from its first failure; then it may try again
    clients: int = 4096  # client addresses remembered (~300 bytes each); the oldest go first


class SignInRefusedError(Exception):
    """A sign-in that is not checked: the HTTP status, when to try again, and why."""

    def __init__(self, status: int, retry_after_s: float, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.retry_after_s = max(1, math.ceil(retry_after_s))
        self.reason = reason


@dataclass
class _Client:
    """One client address: its failed sign-ins since first_failure_s, and a check under way."""

    failures: int = 0
    first_failure_s: float = 0.0
    checking: bool = False


class BasicAuth:
    """Check Authorization headers against the users; remember the ones that passed.

    A password check (scrypt) is costly on purpose, so who may have one is bounded: one at a time
    per client address, at most `limits.failures` failed ones per address per lockout, and
    `limits.at_once + limits.queue` under way in all. A refusal is immediate
    (SignInRefusedError), so a flood of wrong passwords from one address never delays another
    address's sign-in.
    Concurrent requests with the same header (a browser loading the page) share one check.
    """

    def __init__(
        self,
        users: dict[str, PasswordHash],
        limits: SignInLimits = SignInLimits(),
        errors: ErrorLog | None = None,
        *,
        cache_size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.users = users
        self.limits = limits
        self.errors = errors if errors is not None else ErrorLog(log)
        self.cache_size = cache_size
        self.failures = 0
        self.checks = 0  # password checks finished
        self._clock = clock
        self._passed: OrderedDict[bytes, str] = OrderedDict()
        self._checking: dict[bytes, asyncio.Future[str | None]] = {}
        self._clients: OrderedDict[str, _Client] = OrderedDict()
        self._slots = asyncio.Semaphore(limits.at_once)
        # An unknown user costs a check against this, so that timing does not tell users apart.
        self._decoy = PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"decoy-salt", bytes(32))

    @property
    def under_way(self) -> int:
        """Return how many password checks are running or waiting for a slot."""
        return len(self._checking)

    @property
    def clients_remembered(self) -> int:
        """Return how many client addresses the table holds."""
        return len(self._clients)

    async def user(self, header: str | None, client: str = "?") -> str | None:
        """Return the signed-in user of an Authorization header, or None.

        Raise SignInRefusedError when the header would need a check that `client` may not have now.
        """
        if not header:
            return None
        digest = hashlib.sha256(header.encode("utf-8", "surrogateescape")).digest()
        user = self._passed.get(digest)
        if user is not None:
            self._passed.move_to_end(digest)
            return user
        credentials = parse_basic(header)
        if credentials is None:
            return None
        shared = self._checking.get(digest)
        if shared is not None:
            return await asyncio.shield(shared)
        seen = self._admit(client)
        name, password = credentials
        known = self.users.get(name)
        future: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()
        self._checking[digest] = future
        seen.checking = True
        try:
            async with self._slots:
                matched = await asyncio.get_running_loop().run_in_executor(
                    None, (known or self._decoy).matches, password
                )
        except BaseException:
            future.cancel()
            raise
        finally:
            seen.checking = False
            del self._checking[digest]
        self.checks += 1
        user = name if matched and known else None
        future.set_result(user)
        if user is None:
            self._failed(name, client, seen)
            return None
        seen.failures = 0
        self._passed[digest] = name
        while len(self._passed) > self.cache_size:
            self._passed.popitem(last=False)
        return name

    def _admit(self, client: str) -> _Client:
        """Return the client's entry if it may have a password check now, else raise."""
        now = self._clock()
        seen = self._clients.get(client)
        if seen is None:
            seen = self._clients[client] = _Client()
            while len(self._clients) > self.limits.clients:
                self._clients.popitem(last=False)
        else:
            self._clients.move_to_end(client)
        if seen.failures and now - seen.first_failure_s >= self.limits.lockout_s:
            seen.failures = 0
        if seen.failures >= self.limits.failures:
            retry_after_s = seen.first_failure_s + self.limits.lockout_s - now
            self._refused(client, 429, retry_after_s, "too many failed sign-ins from this address")
        if seen.checking:
            self._refused(client, 429, 1, "a sign-in from this address is being checked")
        if self.under_way >= self.limits.at_once + self.limits.queue:
            self._refused(client, 503, 1, "too many sign-ins are being checked")
        return seen

    def _refused(self, client: str, status: int, retry_after_s: float, reason: str) -> NoReturn:
        self.errors.record(
            "sign_in_refused", logging.WARNING, "refused a sign-in from %s: %s", client, reason
        )
        raise SignInRefusedError(status, retry_after_s, reason)

    def _failed(self, name: str, client: str, seen: _Client) -> None:
        self.failures += 1
        if seen.failures == 0:
            seen.first_failure_s = self._clock()
        seen.failures += 1
        self.errors.record(
            "sign_in_failed",
            logging.WARNING,
            "a sign-in failed (user %r, from %s); %d failed sign-in(s) in all",
            name[:64],
            client,
            self.failures,
        )


def _unauthorized(request: web.Request) -> web.Response:
    reply = json_reply(
        {"error": f"Unauthorized: {request.method} {request.path[:200]}: sign in"}, 401
    )
    reply.headers[hdrs.WWW_AUTHENTICATE] = CHALLENGE
    return reply


# The signed-in user's name, which a handler may record (who silenced an alert).
SIGNED_IN_USER = web.RequestKey("pcw_user", str)


def basic_auth(
    users: dict[str, PasswordHash],
    limits: SignInLimits = SignInLimits(),
    errors: ErrorLog | None = None,
) -> Middleware:
    """Return a middleware that lets through only requests signed in as one of users."""
    checker = BasicAuth(users, limits, errors)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer 401 with a Basic challenge unless the request is signed in; 429/503 when the
        sign-in cannot be checked now, with Retry-After."""
        refused: SignInRefusedError | None = None
        try:
            user = await checker.user(request.headers.get(hdrs.AUTHORIZATION), _client(request))
        except SignInRefusedError as error:
            user, refused = None, error
        if user is not None:
            request[SIGNED_IN_USER] = user
            return await handler(request)
        if request.path == HEALTH_PATH and request.method in (hdrs.METH_GET, hdrs.METH_HEAD):
            response = await handler(request)
            status = "ok" if response.status == 200 else "unhealthy"
            return json_reply({"status": status}, response.status)
        if refused is not None:
            return error_reply(
                f"{refused.reason}; try again in {refused.retry_after_s} s",
                refused.status,
                {hdrs.RETRY_AFTER: str(refused.retry_after_s)},
            )
        return _unauthorized(request)

    return middleware


def _client(request: web.Request) -> str:
    """Return the client's address (behind a proxy, the proxy's: its clients share the limit)."""
    return request.remote or "?"
