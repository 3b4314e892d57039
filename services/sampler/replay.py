"""The sampler's replay buffer: recent ticks by sequence number, served to subscribers that ask."""

from __future__ import annotations

import logging
import zlib
from collections import deque

import zmq

from common.replay import MAX_TICKS_PER_REPLY, ReplayEnd, ReplayError, decode_request

log = logging.getLogger(__name__)

MIB = 1 << 20
# zlib's fastest level. Against the run's first tick, a tick of 8 GPUs (5.2 KB published) keeps
# 0.4 KB, in 0.05 ms (2 KB without the dictionary); one of 64 GPUs (44 KB) 11.5 KB in 0.4 ms.
COMPRESS_LEVEL = 1
WINDOW_BYTES = 32 << 10  # zlib's window: a longer dictionary is used from its end only


class TickPacker:
    """Compress each tick's payload against the first tick packed, and back.

    The ticks of one run repeat most of the first one (every GPU's name, UUID and field
    names; values that change slowly), so zlib with the first tick as its dictionary keeps a
    few hundred bytes of a tick of 8 GPUs. The dictionary is fixed for the run: a tick that has
    drifted from it compresses as it would without one. It takes at most WINDOW_BYTES.
    """

    def __init__(self) -> None:
        self.dictionary: bytes | None = None  # set by the first pack()

    def pack(self, frames: list[bytes]) -> tuple[tuple[bytes, ...], bytes]:
        """Return a tick's frames as kept: the head frames as they are, the payload compressed.

        The head (topic, schema version) is the same few bytes objects in every tick.
        """
        payload = frames[-1]
        if self.dictionary is None:
            self.dictionary = bytes(payload[-WINDOW_BYTES:])
        if not self.dictionary:  # zlib takes no empty dictionary
            return tuple(frames[:-1]), zlib.compress(payload, COMPRESS_LEVEL)
        compressor = zlib.compressobj(COMPRESS_LEVEL, zdict=self.dictionary)
        return tuple(frames[:-1]), compressor.compress(payload) + compressor.flush()

    def unpack(self, head: tuple[bytes, ...], packed: bytes) -> list[bytes]:
        """Return the frames that pack() was given."""
        if not self.dictionary:
            return [*head, zlib.decompress(packed)]
        decompressor = zlib.decompressobj(zdict=self.dictionary)
        return [*head, decompressor.decompress(packed) + decompressor.flush()]

    def packed_bytes(self, frames: list[bytes]) -> int:
        """Return the bytes a tick takes packed: what PCW_REPLAY_BYTES counts."""
        head, packed = self.pack(frames)
        return sum(map(len, head)) + len(packed)


class ReplayBuffer:
    """The newest ticks of this sampler run, as the frames that were published.

    Each tick is kept packed (TickPacker: its payload compressed, 4 to 13 times smaller) and
    unpacked only when a writer asks for it. Bounded twice: at most `capacity` ticks, which
    take at most `max_bytes` bytes together packed (None: no bound in bytes); the oldest goes
    first. Python's objects add about 150 bytes per tick to what is counted, the packer's
    dictionary at most 32 KB to the whole.
    """

    def __init__(self, sampler_id: str, capacity: int, max_bytes: int | None = None) -> None:
        self.sampler_id = sampler_id
        self.capacity = capacity
        self.max_bytes = max_bytes
        # (seq, head frames, compressed payload, their bytes); sequence numbers consecutive,
        # the oldest first
        self._ticks: deque[tuple[int, tuple[bytes, ...], bytes, int]] = deque()
        self.held_bytes = 0
        self.too_large = 0  # ticks larger than max_bytes on their own: never held
        self.requests = 0
        self.bad_requests = 0
        self.packer = TickPacker()

    def describe(self) -> str:
        """Return the bound in words: "up to N ticks / X MiB"."""
        if self.max_bytes is None:
            return f"up to {self.capacity:,} ticks"
        mib = f"{self.max_bytes / MIB:,.1f}".removesuffix(".0")
        return f"up to {self.capacity:,} ticks / {mib} MiB"

    def add(self, seq: int, frames: list[bytes]) -> None:
        """Keep a published tick, packed; the oldest fall out until both bounds hold."""
        head, payload = self.packer.pack(frames)
        size_bytes = sum(map(len, head)) + len(payload)
        if self.max_bytes is not None and size_bytes > self.max_bytes:
            # Older ticks are dropped too: what is held stays the newest ticks, with no hole.
            self._ticks.clear()
            self.held_bytes = 0
            self.too_large += 1
            if self.too_large == 1:
                log.warning(
                    "tick %d (%d bytes compressed) is larger than the replay buffer"
                    " (PCW_REPLAY_BYTES=%d): it cannot be replayed",
                    seq,
                    size_bytes,
                    self.max_bytes,
                )
            return
        self._ticks.append((seq, head, payload, size_bytes))
        self.held_bytes += size_bytes
        while len(self._ticks) > self.capacity or (
            self.max_bytes is not None and self.held_bytes > self.max_bytes
        ):
            self.held_bytes -= self._ticks.popleft()[3]

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
            held = (self._ticks[seq - first_seq] for seq in range(start, stop + 1))
            replies = [self.packer.unpack(head, payload) for _, head, payload, _ in held]
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
