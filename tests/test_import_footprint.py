"""The sampler and the writer load neither asyncio nor OpenSSL: about 5 + 3.5 MB of RSS each.

Neither runs an event loop. pyzmq's zmq.asyncio, zmq.auth.thread and zmq.utils.monitor import
asyncio (and ssl with it); services.transport keeps them out of these two processes (the hub's
CURVE gate imports its authenticator only when keys are set). Both hash a few short strings
with CPython's built-in hashes rather than OpenSSL's (services.builtin_hashes).
"""

from __future__ import annotations

import hashlib
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from common.status import status_endpoint
from tests.stack import REPO, child_env

HEAVY = ("asyncio", "ssl", "zmq.asyncio", "_hashlib")


def _run(
    args: list[str], env_overrides: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = child_env()
    env.update(env_overrides or {})
    return subprocess.run(
        [sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize("program", ["services.sampler", "services.writer"])
def test_the_program_as_run_imports_no_event_loop_and_no_openssl(program):
    # Its entry point as `python -m` runs it; a bad setting: it imports everything, says which
    # setting, and exits 2.
    probe = (
        "import runpy, sys\n"
        "try:\n"
        f"    runpy.run_module({program!r}, run_name='__main__', alter_sys=True)\n"
        "except SystemExit as stop:\n"
        f"    loaded = [m for m in {HEAVY!r} if sys.modules.get(m) is not None]\n"
        "    print(stop.code, 'zmq' in sys.modules, *loaded)\n"
    )
    done = _run(["-c", probe], {"PCW_INTERVAL_S": "soon"})
    assert "PCW_INTERVAL_S" in done.stderr
    assert done.stdout.split() == ["2", "True"]


def test_builtin_hashes_give_the_digests_openssl_gives(tmp_path: Path):
    probe = (
        "import sys\n"
        "from services.builtin_hashes import use_builtin_hashes\n"
        "assert use_builtin_hashes()\n"
        "import hashlib, uuid, pathlib\n"
        "from common.status import status_endpoint\n"
        f"print(status_endpoint('', pathlib.Path({str(tmp_path / 'x.db')!r})))\n"
        "print(uuid.uuid5(uuid.NAMESPACE_DNS, 'host.gpu0'))\n"
        "print(hashlib.blake2b(b'key/1', digest_size=4).hexdigest())\n"
        "print(hashlib.sha256(b'alert|fired').hexdigest())\n"
        "print('_hashlib' in sys.modules and sys.modules['_hashlib'] is not None)\n"
        "print(any('libcrypto' in line for line in open('/proc/self/maps')))\n"
    )
    done = _run(["-c", probe])
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:6] == [
        status_endpoint("", tmp_path / "x.db"),
        str(uuid.uuid5(uuid.NAMESPACE_DNS, "host.gpu0")),
        hashlib.blake2b(b"key/1", digest_size=4).hexdigest(),
        hashlib.sha256(b"alert|fired").hexdigest(),
        "False",
        "False",
    ]
