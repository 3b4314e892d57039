"""Optional HTTP basic auth over every route, with users and scrypt hashes from PCW_AUTH_FILE.

The file holds one `user:hash` line per user (blank lines and `#` comments are skipped); the
hash is `scrypt$N$r$p$salt$key` with base64 salt and key, as `python -m services.web.passwd USER`
prints it. Only the standard library hashes: hashlib.scrypt, and hmac.compare_digest to compare.

scrypt costs tens of milliseconds on purpose, so a verified Authorization header is remembered
(by its SHA-256, never the password) in a small bounded map, and at most VERIFY_AT_ONCE
verifications run at a time, off the event loop.

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
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import hdrs, web
from aiohttp.typedefs import Handler, Middleware

from services.web.replies import json_reply

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
FAILURE_LOG_EVERY_S = 60.0
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


@dataclass
class BasicAuth:
    """Check Authorization headers against the users; remember the ones that passed."""

    users: dict[str, PasswordHash]
    cache_size: int = CACHE_SIZE
    failures: int = 0
    _passed: OrderedDict[bytes, str] = field(default_factory=OrderedDict)
    _slots: asyncio.Semaphore = field(default_factory=lambda: asyncio.Semaphore(VERIFY_AT_ONCE))
    _failure_logged_at: float = -FAILURE_LOG_EVERY_S
    # An unknown user costs a check against this, so that timing does not tell users apart.
    _decoy: PasswordHash = field(
        default_factory=lambda: PasswordHash(SCRYPT_N, SCRYPT_R, SCRYPT_P, b"decoy-salt", bytes(32))
    )

    async def user(self, header: str | None) -> str | None:
        """Return the signed-in user of an Authorization header, or None."""
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
        name, password = credentials
        known = self.users.get(name)
        async with self._slots:
            matched = await asyncio.get_running_loop().run_in_executor(
                None, (known or self._decoy).matches, password
            )
        if not (matched and known):
            self._failed(name)
            return None
        self._passed[digest] = name
        while len(self._passed) > self.cache_size:
            self._passed.popitem(last=False)
        return name

    def _failed(self, name: str) -> None:
        self.failures += 1
        now = time.monotonic()
        if now - self._failure_logged_at >= FAILURE_LOG_EVERY_S:
            self._failure_logged_at = now
            log.warning(
                "a sign-in failed (user %r); %d failed sign-in(s) in all", name[:64], self.failures
            )


def _unauthorized(request: web.Request) -> web.Response:
    reply = json_reply(
        {"error": f"Unauthorized: {request.method} {request.path[:200]}: sign in"}, 401
    )
    reply.headers[hdrs.WWW_AUTHENTICATE] = CHALLENGE
    return reply


def basic_auth(users: dict[str, PasswordHash]) -> Middleware:
    """Return a middleware that lets through only requests signed in as one of users."""
    checker = BasicAuth(users)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        """Answer 401 with a Basic challenge unless the request is signed in."""
        if await checker.user(request.headers.get(hdrs.AUTHORIZATION)) is not None:
            return await handler(request)
        if request.path == HEALTH_PATH and request.method in (hdrs.METH_GET, hdrs.METH_HEAD):
            response = await handler(request)
            status = "ok" if response.status == 200 else "unhealthy"
            return json_reply({"status": status}, response.status)
        return _unauthorized(request)

    return middleware
