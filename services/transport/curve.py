"""ZeroMQ CURVE between samplers and the hub: load the certificates, secure sockets, run the gate.

- The sampler binds and the hub connects, but the hub is CURVE's *server*: its SUB and DEALER
  hold the hub's secret key and a ZAP handler (the gate, pyzmq's zmq.auth) that accepts only the
  sampler certificates in PCW_CURVE_SAMPLER_KEYS_DIR.
- Each sampler's PUB and ROUTER are CURVE *clients*: the sampler's own secret key, and no server
  but the one holding the hub's key (PCW_CURVE_HUB_KEY_FILE). Both ends authenticate each other
  and the traffic is encrypted, whatever side binds.
- libzmq lets any client key in when no ZAP handler runs in the socket's context: the gate starts
  before the hub's sockets connect and stops only after they are closed.
- Certificates are pyzmq's (czmq's) text files: NAME.key holds the public key, NAME.key_secret
  both keys (see services.transport.keygen).
"""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from common.config import Config
from common.throttle import ThrottledLog

log = logging.getLogger(__name__)

SECRET_VAR = "PCW_CURVE_SECRET_KEY_FILE"
HUB_KEY_VAR = "PCW_CURVE_HUB_KEY_FILE"
SAMPLER_KEYS_VAR = "PCW_CURVE_SAMPLER_KEYS_DIR"
PLAINTEXT_VAR = "PCW_ALLOW_PLAINTEXT"
KEY_CHARS = 40  # a Z85-encoded 32-byte CURVE key
REFUSED_LOG_EVERY_S = 60.0
# A file written within this time of a read may share its mtime with what was read (coarse
# file-system clocks): the folder is read again until that is no longer so.
RACY_NS = 2_000_000_000
LOOPBACK_NAMES = frozenset(("localhost",))
LOCAL_TRANSPORTS = ("ipc://", "inproc://")


class CurveSetupError(ValueError):
    """The CURVE settings cannot work; the message is one line that names the variable."""


@dataclass(frozen=True)
class SamplerKeys:
    """A sampler's own key pair and the hub's public key it will talk to (Z85 bytes)."""

    public: bytes
    secret: bytes
    hub_public: bytes


@dataclass(frozen=True)
class HubKeys:
    """The hub's own key pair and the folder of sampler public certificates it accepts."""

    public: bytes
    secret: bytes
    sampler_keys_dir: Path


def _valid_key(key: bytes | None) -> bool:
    if key is None or len(key) != KEY_CHARS:
        return False
    try:
        z85.decode(key)
    except ValueError:
        return False
    return True


def _load(variable: str, path: Path, *, secret: bool) -> tuple[bytes, bytes | None]:
    """Return (public, secret) from a certificate file; raise CurveSetupError naming variable."""
    try:
        public_key, secret_key = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as error:
        raise CurveSetupError(
            f"{variable}={str(path)!r} is not a CURVE certificate: {error}"
        ) from None
    if not _valid_key(public_key):
        raise CurveSetupError(f"{variable}={str(path)!r} holds no valid public-key")
    if secret and not _valid_key(secret_key):
        raise CurveSetupError(
            f"{variable}={str(path)!r} holds no valid secret-key: name the NAME.key_secret file"
        )
    if secret and path.stat().st_mode & 0o077:
        log.warning("%s=%s can be read by other users: chmod 600 it", variable, path)
    return public_key, secret_key


def _own_pair(config: Config) -> tuple[bytes, bytes]:
    assert config.curve_secret_key_file is not None
    public_key, secret_key = _load(SECRET_VAR, config.curve_secret_key_file, secret=True)
    assert secret_key is not None
    return public_key, secret_key


def _curve_on(config: Config, other_var: str, other: Path | None, whose: str, needed: str) -> bool:
    """Return whether CURVE is on: the secret key and other_var both set; raise if only one is.

    whose: whose secret key the process needs; needed: what other_var must name.
    """
    if config.curve_secret_key_file is None:
        if other is not None:
            raise CurveSetupError(
                f"{other_var} is set but {SECRET_VAR} is not: set it to {whose} "
                "NAME.key_secret file (python -m services.keygen NAME)"
            )
        return False
    if other is None:
        raise CurveSetupError(f"{SECRET_VAR} is set but {other_var} is not: set it to {needed}")
    return True


def sampler_keys(config: Config) -> SamplerKeys | None:
    """Return the sampler's CURVE keys, None when CURVE is off; raise CurveSetupError."""
    hub_key_file = config.curve_hub_key_file
    needed = "the hub's public certificate (its NAME.key file)"
    if not _curve_on(config, HUB_KEY_VAR, hub_key_file, "this sampler's", needed):
        return None
    assert hub_key_file is not None
    public_key, secret_key = _own_pair(config)
    hub_public, _ = _load(HUB_KEY_VAR, hub_key_file, secret=False)
    return SamplerKeys(public_key, secret_key, hub_public)


def accepted_keys(folder: Path) -> set[bytes]:
    """Return the public keys of the NAME.key certificates in folder; raise CurveSetupError."""
    try:
        keys = set(zmq.auth.load_certificates(folder))
    except (OSError, ValueError) as error:
        raise CurveSetupError(f"{SAMPLER_KEYS_VAR}={str(folder)!r}: {error}") from None
    return {key for key in keys if _valid_key(key)}


def hub_keys(config: Config) -> HubKeys | None:
    """Return the hub's CURVE keys, None when CURVE is off; raise CurveSetupError."""
    needed = (
        "the folder of the samplers' public certificates (their NAME.key files) that this hub"
        " accepts"
    )
    if not _curve_on(config, SAMPLER_KEYS_VAR, config.curve_sampler_keys_dir, "the hub's", needed):
        return None
    assert config.curve_sampler_keys_dir is not None
    public_key, secret_key = _own_pair(config)
    if not accepted_keys(config.curve_sampler_keys_dir):
        raise CurveSetupError(
            f"{SAMPLER_KEYS_VAR}={str(config.curve_sampler_keys_dir)!r} holds no sampler public "
            "certificate (NAME.key file): the hub would accept no sampler"
        )
    return HubKeys(public_key, secret_key, config.curve_sampler_keys_dir)


def secure_sampler_socket(socket: zmq.Socket, keys: SamplerKeys | None) -> None:
    """Make a sampler socket a CURVE client of the hub (before it binds); no-op without keys."""
    if keys is None:
        return
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public
    socket.curve_serverkey = keys.hub_public


def secure_hub_socket(socket: zmq.Socket, keys: HubKeys | None) -> None:
    """Make a hub socket a CURVE server (before it connects); no-op without keys."""
    if keys is None:
        return
    socket.curve_server = True
    socket.curve_secretkey = keys.secret
    socket.curve_publickey = keys.public


def is_loopback_endpoint(endpoint: str) -> bool:
    """Return whether a bind endpoint is reachable from this machine only.

    ipc:// and inproc:// are; tcp:// is when its host is a loopback address or `localhost`.
    `*`, 0.0.0.0, any other address, host name or interface name is not.
    """
    if endpoint.startswith(LOCAL_TRANSPORTS):
        return True
    host = endpoint.split("://", 1)[-1].rpartition(":")[0].strip("[]")
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def plaintext_refusal(config: Config, keys: SamplerKeys | None) -> str | None:
    """Return why a sampler must not start unencrypted on its endpoint, or None if it may."""
    if keys is not None or is_loopback_endpoint(config.pub_endpoint):
        return None
    if config.allow_plaintext:
        log.warning(
            "publishing UNENCRYPTED and unauthenticated on %s (%s=1)",
            config.pub_endpoint,
            PLAINTEXT_VAR,
        )
        return None
    return (
        f"refusing to publish unencrypted on {config.pub_endpoint}, which is not a loopback "
        f"address: set {SECRET_VAR} and {HUB_KEY_VAR} (keys from python -m services.keygen) "
        f"for CURVE, or {PLAINTEXT_VAR}=1 to publish in plain text anyway"
    )


def folder_state(folder: Path) -> tuple[tuple[str, int, int, int], ...] | None:
    """Return what changes when a NAME.key file in folder is added, removed or rewritten.

    One listing and a stat per certificate: (name, inode, size in bytes, mtime in ns) each.
    None when the folder cannot be listed.
    """
    try:
        with os.scandir(folder) as entries:
            found = []
            for entry in entries:
                if entry.name.endswith(".key"):
                    stat = entry.stat()
                    found.append((entry.name, stat.st_ino, stat.st_size, stat.st_mtime_ns))
    except OSError:
        return None
    return tuple(sorted(found))


class SamplerGate:
    """Decide which sampler keys the hub accepts: those of the NAME.key files in a folder.

    Every handshake looks at the folder (a listing and a stat per file) and reads the
    certificates again when any was added, removed or rewritten. So a sampler whose certificate
    is copied there later is let in without restarting the hub, and one whose certificate is
    removed or replaced is refused from its next connection on, however soon it comes (a
    connection already made stays up until it breaks). A refused key is logged, at most once per
    REFUSED_LOG_EVERY_S for each key.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.refused = 0
        self._refusals = ThrottledLog(log, REFUSED_LOG_EVERY_S, max_kinds=1000)  # made-up keys
        self._state: tuple[tuple[str, int, int, int], ...] | None = None
        self._racy = True
        self.keys: set[bytes] = self._read(folder_state(folder))

    def _read(self, state: tuple[tuple[str, int, int, int], ...] | None) -> set[bytes]:
        """Read the certificates; remember the folder's state they were read in."""
        read_at_ns = time.time_ns()
        keys = accepted_keys(self.folder)
        self._state = state
        newest_ns = max((mtime_ns for *_, mtime_ns in state or ()), default=0)
        self._racy = newest_ns >= read_at_ns - RACY_NS
        return keys

    def _current(self) -> set[bytes]:
        """Return the accepted keys as the folder holds them now."""
        state = folder_state(self.folder)
        if state == self._state and not self._racy:
            return self.keys
        try:
            return self._read(state)
        except CurveSetupError as error:
            self._state, self._racy = state, False  # logged once until the folder changes
            log.error("cannot read the accepted sampler keys again: %s", error)
            return self.keys

    def callback(self, domain: str, key: bytes) -> bool:
        """Return whether the Z85 client key may connect (pyzmq's credentials provider)."""
        listed = key in self.keys
        self.keys = self._current()
        if key in self.keys:
            if not listed:
                log.info("accepting sampler key %s, newly found in %s", key.decode(), self.folder)
            return True
        self.refused += 1
        shown = key.decode(errors="replace")
        self._refusals.log(
            shown,
            logging.WARNING,
            "refused a sampler whose public key %s is not in %s (%s); %d refusal(s) in all",
            shown,
            self.folder,
            SAMPLER_KEYS_VAR,
            self.refused,
        )
        return False


def _admit_listed(authenticator: zmq.auth.Authenticator, keys: HubKeys) -> SamplerGate:
    """Make a started authenticator admit only the samplers listed in keys' folder."""
    sampler_gate = SamplerGate(keys.sampler_keys_dir)
    authenticator.configure_curve_callback(domain="*", credentials_provider=sampler_gate)
    log.info(
        "CURVE on: accepting %d sampler key(s) from %s",
        len(sampler_gate.keys),
        keys.sampler_keys_dir,
    )
    return sampler_gate


@contextmanager
def gate(context: zmq.Context, keys: HubKeys | None) -> Iterator[SamplerGate | None]:
    """Run the hub's ZAP handler on context while the block runs; no-op without keys.

    On an asyncio context it runs on the event loop, on any other in a thread of its own.
    """
    if keys is None:
        yield None
        return
    # Imported here: zmq.auth.thread and zmq.auth.asyncio load asyncio and ssl (about 5 MB of
    # RSS), which a sampler and a writer without CURVE never use.
    from zmq.auth.asyncio import AsyncioAuthenticator
    from zmq.auth.thread import ThreadAuthenticator

    asyncio_zmq = sys.modules.get("zmq.asyncio")  # not imported: no asyncio context exists
    on_loop = asyncio_zmq is not None and isinstance(context, asyncio_zmq.Context)
    authenticator = (AsyncioAuthenticator if on_loop else ThreadAuthenticator)(context)
    authenticator.start()
    try:
        yield _admit_listed(authenticator, keys)
    finally:
        authenticator.stop()
