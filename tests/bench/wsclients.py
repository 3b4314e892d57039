"""Many websocket clients in one process, timing when each tick reaches the last of them.

    python -m tests.bench.wsclients URL CLIENTS TICKS TIMEOUT_S

Connects CLIENTS websockets to URL, waits for the first message on each (the server's snapshot
or greeting, sent once the server has the client), and writes "ready" on a line of stdout. Then
each client reads until it has TICKS tick messages; on the way, the time each tick (by its `seq`)
reached its last client is kept, in time.monotonic() seconds, which on Linux every process reads
from the same clock. At the end one line of JSON goes to stdout:
{"last": {seq: seconds}, "received": {seq: clients}, "cpu_s": CPU seconds this process used
from "ready" to the last receipt}.

A separate process, so that the server under test has a core of its own.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

import aiohttp

CONNECT_CHUNK = 100  # connections opened at once: stay well under the server's listen backlog
SEQ_KEY = '"seq":'


class Receipts:
    """When each tick reached its last client so far, and how many clients it reached."""

    def __init__(self) -> None:
        self.last: dict[int, float] = {}
        self.received: dict[int, int] = {}

    def add(self, text: str, at_s: float) -> bool:
        """Record a message received at at_s; return whether it was a tick."""
        if not text.startswith('{"type":"tick"'):
            return False
        start = text.index(SEQ_KEY) + len(SEQ_KEY)
        seq = int(text[start : text.index(",", start)])
        self.last[seq] = max(self.last.get(seq, 0.0), at_s)
        self.received[seq] = self.received.get(seq, 0) + 1
        return True


async def _client(ws: aiohttp.ClientWebSocketResponse, receipts: Receipts, ticks: int) -> None:
    seen = 0
    while seen < ticks:
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"websocket ended: {message.type!r} {message.data!r}")
        if receipts.add(message.data, time.monotonic()):
            seen += 1


async def main_async(url: str, clients: int, ticks: int, timeout_s: float) -> int:
    """Connect, say ready, collect, report; return the exit status."""
    receipts = Receipts()
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        sockets: list[aiohttp.ClientWebSocketResponse] = []
        for first in range(0, clients, CONNECT_CHUNK):
            count = min(CONNECT_CHUNK, clients - first)
            sockets += await asyncio.gather(*(session.ws_connect(url) for _ in range(count)))
        for ws in sockets:
            await ws.receive()  # the snapshot: the server now sends this client every tick
        sys.stdout.write("ready\n")
        sys.stdout.flush()
        cpu_at_ready_s = time.process_time()
        try:
            await asyncio.wait_for(
                asyncio.gather(*(_client(ws, receipts, ticks) for ws in sockets)), timeout_s
            )
        except (TimeoutError, ConnectionError) as error:
            sys.stderr.write(f"wsclients: stopped early: {error!r}\n")
        cpu_s = time.process_time() - cpu_at_ready_s
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    answer = {"last": receipts.last, "received": receipts.received, "cpu_s": cpu_s}
    sys.stdout.write(json.dumps(answer) + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    """Parse the arguments and run the clients."""
    url, clients, ticks, timeout_s = (argv or sys.argv[1:])[:4]
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return asyncio.run(main_async(url, int(clients), int(ticks), float(timeout_s)))


if __name__ == "__main__":
    sys.exit(main())
