"""The sampler's replay buffer: recent ticks by sequence number, served to subscribers that ask."""

from __future__ import annotations

import logging
from collections import deque

import zmq

from common.replay import MAX_TICKS_PER_REPLY, ReplayEnd, ReplayError, decode_request

log = logging.getLogger(__name__)


class ReplayBuffer:
    """The last `capacity` ticks of this sampler run, as the frames that were published."""

    def __init__(self, sampler_id: str, capacity: int) -> None:
        self.sampler_id = sampler_id
        self._ticks: deque[tuple[int, list[bytes]]] = deque(maxlen=capacity)
        self.requests = 0
        self.bad_requests = 0

    def add(self, seq: int, frames: list[bytes]) -> None:
        """Keep a published tick; the oldest falls out when full."""
        self._ticks.append((seq, frames))

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
