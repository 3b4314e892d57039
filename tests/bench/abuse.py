"""The web process under abuse: what a real user waits for while someone else floods it.

    python -m tests.bench.abuse sign-in                 # a sign-in under 200 concurrent wrong ones
    python -m tests.bench.abuse lanes --db FILE         # /api/v1/gpus under 20 long energy reads
    ... --code DIR                                      # run the web process of another checkout
    ... --set PCW_RANGE_READ_QUEUE=18                   # a setting of the web process

`sign-in`: 200 concurrent requests with wrong passwords from 127.0.0.1; once the first of them is
answered, one sign-in with the right password from 127.0.0.2; its latency, and when the last
wrong one was answered. `lanes`: 20 concurrent `/api/v1/energy?from=0` over FILE (a file from
tests.bench.generate); once they are all sent and the first one is being read, `/api/v1/gpus`;
its latency, and when the last long read was answered. `--code` runs `python -m services.web`
from another checkout (such as the commit before a change) for the "before" figure.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from services.web.auth import hash_password
from tests.bench.procs import REPO, bench_env, free_port, http_status, stop, wait_until

log = logging.getLogger(__name__)

WRONG_ATTEMPTS = 200
LONG_READS = 20
USER, PASSWORD = "alice", "a long passphrase"


def basic(user: str, password: str) -> dict[str, str]:
    """Return the Authorization header of a Basic sign-in."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@contextmanager
def web(code: Path, work: Path, **settings: str) -> Iterator[str]:
    """Run `python -m services.web` of the checkout `code`; yield its URL once it answers."""
    port = free_port()
    env = bench_env(
        {
            "PCW_WEB_HOST": "127.0.0.1",
            "PCW_WEB_PORT": str(port),
            "PCW_SUBSCRIBE": f"tcp://127.0.0.1:{free_port()}",
            "PCW_DB_PATH": str(work / "absent.db"),
            **settings,
        }
    )
    env["PYTHONPATH"] = str(code)
    log_path = work / "web.log"
    with log_path.open("ab") as log_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "services.web"],
            cwd=code,
            env=env,
            stdout=log_file,
            stderr=log_file,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: http_status(url + "/healthz") is not None, 60, "the web", process, log_path
        )
        yield url
    finally:
        stop(process)


async def sign_in_under_flood(url: str) -> tuple[float, float, dict[int, int]]:
    """Return (sign-in latency s, last wrong answer s after the flood began, statuses counted)."""
    attacker = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0, force_close=True))
    user = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
    first_answer = asyncio.Event()
    statuses: dict[int, int] = {}
    async with attacker, user:
        started_s = time.perf_counter()

        async def wrong(number: int) -> float:
            headers = basic(USER, f"guess {number}")
            async with attacker.get(url + "/api/v1/gpus", headers=headers) as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            first_answer.set()
            return time.perf_counter() - started_s

        flood = [asyncio.create_task(wrong(number)) for number in range(WRONG_ATTEMPTS)]
        await first_answer.wait()
        sent_s = time.perf_counter()
        async with user.get(url + "/api/v1/gpus", headers=basic(USER, PASSWORD)) as response:
            await response.read()
            assert response.status == 200, response.status
        latency_s = time.perf_counter() - sent_s
        drained_s = max(await asyncio.gather(*flood))
    return latency_s, drained_s, statuses


async def gpus_under_long_reads(url: str) -> tuple[float, float, dict[int, int]]:
    """Return (/api/v1/gpus latency s, last long answer s after they began, statuses counted)."""
    statuses: dict[int, int] = {}
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        started_s = time.perf_counter()

        async def long_read() -> float:
            async with session.get(url + "/api/v1/energy?from=0") as response:
                await response.read()
                statuses[response.status] = statuses.get(response.status, 0) + 1
            return time.perf_counter() - started_s

        reads = [asyncio.create_task(long_read()) for _ in range(LONG_READS)]
        await asyncio.sleep(0.5)  # a load pattern, not a wait for state: the reads are under way
        sent_s = time.perf_counter()
        async with session.get(url + "/api/v1/gpus") as response:
            await response.read()
            assert response.status == 200, response.status
        latency_s = time.perf_counter() - sent_s
        drained_s = max(await asyncio.gather(*reads))
    return latency_s, drained_s, statuses


def main(argv: list[str] | None = None) -> int:
    """Run one measurement and print its figures; return the exit status."""
    parser = argparse.ArgumentParser(prog="python -m tests.bench.abuse")
    parser.add_argument("what", choices=("sign-in", "lanes"))
    parser.add_argument("--code", type=Path, default=REPO, help="checkout whose web to run")
    parser.add_argument("--db", type=Path, help="lanes: the history file to read")
    parser.add_argument(
        "--set", action="append", default=[], metavar="PCW_NAME=VALUE", help="a web setting"
    )
    args = parser.parse_args(argv)
    settings = dict(item.split("=", 1) for item in args.set)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with tempfile.TemporaryDirectory(prefix="pcw-abuse-") as folder:
        work = Path(folder)
        if args.what == "sign-in":
            users = work / "users.txt"
            users.write_text(f"{USER}:{hash_password(PASSWORD)}\n")
            with web(args.code, work, PCW_AUTH_FILE=str(users), **settings) as url:
                latency_s, drained_s, statuses = asyncio.run(sign_in_under_flood(url))
            what = f"sign-in under {WRONG_ATTEMPTS} concurrent wrong passwords"
        else:
            if args.db is None:
                parser.error("lanes needs --db FILE")
            with web(args.code, work, PCW_DB_PATH=str(args.db), **settings) as url:
                latency_s, drained_s, statuses = asyncio.run(gpus_under_long_reads(url))
            what = f"/api/v1/gpus under {LONG_READS} concurrent /api/v1/energy?from=0"
    log.info(
        "%s: %.3f s; the flood's last answer at %.2f s; its statuses %s (code: %s, %d CPUs)",
        what,
        latency_s,
        drained_s,
        dict(sorted(statuses.items())),
        args.code,
        os.cpu_count() or 0,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
