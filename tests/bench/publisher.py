"""A ZeroMQ publisher that the bench binds in place of a sampler, and the ticks it sends."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import zmq

from common.messages import TOPIC, Tick
from tests.bench.generate import fast_host_ticks
from tests.bench.procs import free_port

SUBSCRIBE_PREFIX = b"\x01"


@contextlib.contextmanager
def bound_publisher() -> Iterator[tuple[zmq.Socket, str]]:
    """Bind an XPUB on 127.0.0.1 that never drops (no high-water mark) and sees subscriptions.

    The port after it is left free: a writer asks there for replays, and none are expected.
    """
    with zmq.Context() as context, context.socket(zmq.XPUB) as socket:
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SNDHWM, 0)
        socket.setsockopt(zmq.XPUB_VERBOSE, 1)
        endpoint = f"tcp://127.0.0.1:{free_port(consecutive=2)}"
        socket.bind(endpoint)
        yield socket, endpoint


def wait_subscribed(socket: zmq.Socket, timeout_s: float, subscribers: int = 1) -> None:
    """Wait until `subscribers` subscriptions to the tick topic have reached the publisher."""
    deadline = time.monotonic() + timeout_s
    seen = 0
    while seen < subscribers:
        remaining_ms = int((deadline - time.monotonic()) * 1000)
        if remaining_ms <= 0 or not socket.poll(remaining_ms):
            raise TimeoutError(f"{seen} of {subscribers} subscribers after {timeout_s:g} s")
        message = socket.recv()
        if message.startswith(SUBSCRIBE_PREFIX) and TOPIC.startswith(message[1:]):
            seen += 1


def ticks(count: int, interval_s: float, gpus: int = 8, host: str = "benchhost") -> list[Tick]:
    """Return `count` consecutive ticks of one host ending now, seq from 0."""
    last_ts = (time.time() // interval_s) * interval_s
    first_ts = last_ts - (count - 1) * interval_s
    return list(fast_host_ticks(host, gpus, first_ts, count, interval_s))
