"""Stop a process's long poll at once on SIGTERM or SIGINT: the handler only sets a flag.

The signal module writes each signal's number to a socket pair that the process's poller also
watches, so a loop that sleeps a whole interval in zmq.Poller.poll wakes up when asked to stop.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
from types import FrameType

import zmq

log = logging.getLogger(__name__)


class StopFlag:
    """Set by SIGTERM or SIGINT; a zmq.Poller it is registered with wakes up on it."""

    def __init__(self) -> None:
        self.stopping = False
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def register(self, poller: zmq.Poller) -> None:
        """Make `poller` wake up when a stop signal arrives."""
        poller.register(self._read, zmq.POLLIN)

    def is_source(self, polled: object) -> bool:
        """Return whether an item from poller.poll() is this flag (pyzmq hands back the fd)."""
        return polled in (self._read, self._read.fileno())

    def drain(self) -> None:
        """Read the signal bytes so that the next poll sleeps again."""
        with contextlib.suppress(BlockingIOError):
            self._read.recv(4096)

    def install(self) -> None:
        """Route SIGTERM and SIGINT to this flag (main thread only)."""
        signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def set(self) -> None:
        """Ask the loop to stop, as a signal would."""
        self.stopping = True
        with contextlib.suppress(BlockingIOError):
            self._write.send(b"\0")

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        log.info("signal %d: finishing the current step, then stopping", signum)
        self.stopping = True
