"""The sampler's replay buffer: recent ticks by sequence number, served to subscribers that ask."""

from __future__ import annotations

import logging
from collections import deque

import zmq

from common.replay import MAX_TICKS_PER_REPLY, ReplayEnd, ReplayError, decode_request

log = logging.getLogger(__name__)

MIB = 1 << 20


class ReplayBuffer:
    """The newest ticks of this sampler run, as the frames that were published.

    Bounded twice: at most `capacity` ticks, whose frames take at most `max_bytes` bytes
    together (None: no bound in bytes); the oldest goes first. The bytes counted are the
    frames' own, what a replay sends; Python's objects add a few hundred bytes per tick.
    """

    def __init__(self, sampler_id: str, capacity: int, max_bytes: int | None = None) -> None:
        self.sampler_id = sampler_id
        self.capacity = capacity
        self.max_bytes = max_bytes
        # (seq, frames, their bytes); sequence numbers consecutive, the oldest first
        self._ticks: deque[tuple[int, list[bytes], int]] = deque()
        self.held_bytes = 0
        self.too_large = 0  # ticks larger than max_bytes on their own: never held
        self.requests = 0
        self.bad_requests = 0

    def describe(self) -> str:
        """Return the bound in words: "up to N ticks / X MiB"."""
        if self.max_bytes is None:
            return f"up to {self.capacity:,} ticks"
        mib = f"{self.max_bytes / MIB:,.1f}".removesuffix(".0")
        return f"up to {self.capacity:,} ticks / {mib} MiB"

    def add(self, seq: int, frames: list[bytes]) -> None:
        """Keep a published tick; the oldest fall out until both bounds hold."""
        size_bytes = sum(len(frame) for frame in frames)
        if self.max_bytes is not None and size_bytes > self.max_bytes:
            # Older ticks are dropped too: what is held stays the newest ticks, with no hole.
            self._ticks.clear()
            self.held_bytes = 0
            self.too_large += 1
            if self.too_large == 1:
                log.warning(
                    "tick %d (%d bytes) is larger than the replay buffer (PCW_REPLAY_BYTES=%d):"
                    " it cannot be replayed",
                    seq,
                    size_bytes,
                    self.max_bytes,
                )
            return
        self._ticks.append((seq, frames, size_bytes))
        self.held_bytes += size_bytes
        while len(self._ticks) > self.capacity or (
            self.max_bytes is not None and self.held_bytes > self.max_bytes
        ):
            self.held_bytes -= self._ticks.popleft()[2]

    def __len__(self) -> int:
        """Return how many ticks are held."""
        return len(self._ticks)

    def held(self) -> tuple[int | None, int | None]:
        """Return the first and last sequence numbers held (None, None when empty)."""
        if not self._ticks:
            return None, None
        return self._ticks[0][0], self._ticks[-1][0]

    def answer(self, request_frames: list[bytes]) -> list[list[bytes]]:
        """Return the reply messages for one request: the ticks asked for, then ReplayEnd."""
        try:
            request = decode_request(request_frames)
        except ReplayError as error:
            self.bad_requests += 1
            log.warning("ignored a bad replay request: %s", error)
            return []
        self.requests += 1
        replies: list[list[bytes]] = []
        first_seq, last_seq = self.held()
        if request.sampler_id == self.sampler_id and first_seq is not None:
            start = max(request.from_seq, first_seq)
            stop = min(request.to_seq, last_seq, start + MAX_TICKS_PER_REPLY - 1)
            # sequence numbers are consecutive in the deque, so an index is a subtraction
            replies = [self._ticks[seq - first_seq][1] for seq in range(start, stop + 1)]
        end = ReplayEnd(request, self.sampler_id, len(replies), first_seq, last_seq)
        log.info(
            "replayed %d ticks of %s-%s for a subscriber",
            len(replies),
            request.from_seq,
            request.to_seq,
        )
        return [*replies, end.to_frames()]


def serve_pending(socket: zmq.Socket, buffer: ReplayBuffer) -> int:
    """Answer every request waiting on the ROUTER socket; return how many were answered."""
    answered = 0
    while True:
        try:
            identity, *frames = socket.recv_multipart(zmq.NOBLOCK)
        except zmq.Again:
            return answered
        for reply in buffer.answer(frames):
            socket.send_multipart([identity, *reply])
        answered += 1
