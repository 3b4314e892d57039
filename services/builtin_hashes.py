"""Keep OpenSSL's libcrypto out of a process that hashes only a few short strings.

hashlib loads OpenSSL's libcrypto (through _hashlib) when it is first imported: about 3.5 MB of
RSS in each process that maps it. The writer (its status socket's name, alerts' delivery keys)
and the sampler (the simulated GPUs' UUIDs) hash a few short strings, for which CPython's
built-in implementations give the same digests. Marking _hashlib as missing before hashlib is
first imported makes hashlib and hmac use those, as on a Python built without OpenSSL. Whatever
needs OpenSSL itself (ssl, for an HTTPS notification target) still loads libcrypto when used.

Not for the web process: aiohttp imports ssl, which maps libcrypto anyway, and its password
checks use hashlib.scrypt, which only OpenSSL provides.
"""

from __future__ import annotations

import sys


def use_builtin_hashes() -> bool:
    """Make hashlib use CPython's built-in hashes in this process; return whether it will.

    Call it first thing in a program's entry point: once hashlib is imported it keeps OpenSSL.
    """
    if "hashlib" in sys.modules:
        return False
    sys.modules.setdefault("_hashlib", None)  # to the import system, None is "not installed"
    return sys.modules["_hashlib"] is None
