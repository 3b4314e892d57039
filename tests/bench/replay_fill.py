"""A child of the replay memory benchmark: a sampler's replay buffer, filled from a file of ticks.

    python -m tests.bench.replay_fill TICKS_FILE as-published|bytes

It imports what the sampler imports, builds the ReplayBuffer from PCW_REPLAY_TICKS and
PCW_REPLAY_BYTES as the sampler does (`as-published`: the buffer as it was before it packed
ticks, keeping each tick's frames as published under the same two bounds), and talks to its
parent over stdin/stdout so that the parent reads its memory at the right moments:

    child: ready          (imports done, buffer empty)   parent: any line
    child: {figures}      (every tick added)             parent: closes stdin; the child exits

The file holds the frames of each tick as published: per tick a little-endian u32 frame count,
then per frame a u32 length and its bytes (see write_ticks).
"""

from __future__ import annotations

import gc
import json
import os
import struct
import sys
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

import services.sampler.main  # noqa: F401  what the sampler imports: this RSS is a sampler's
from common.config import load_config
from services.sampler.replay import ReplayBuffer

MODES = ("as-published", "bytes")
_U32 = struct.Struct("<I")


def write_ticks(path: Path, ticks: Iterable[list[bytes]]) -> int:
    """Write each tick's frames to path; return the bytes of the frames written."""
    total = 0
    with path.open("wb") as out:
        for frames in ticks:
            out.write(_U32.pack(len(frames)))
            for frame in frames:
                out.write(_U32.pack(len(frame)))
                out.write(frame)
                total += len(frame)
    return total


def read_ticks(source: BinaryIO) -> Iterator[list[bytes]]:
    """Yield each tick's frames from a file written by write_ticks, as new bytes objects."""
    while header := source.read(_U32.size):
        (count,) = _U32.unpack(header)
        frames = []
        for _ in range(count):
            (size,) = _U32.unpack(source.read(_U32.size))
            frames.append(source.read(size))
        yield frames


class PublishedBuffer:
    """The replay buffer before it packed ticks (the baseline): each tick's frames as published,
    at most `capacity` ticks whose frames take at most `max_bytes`; the oldest goes first."""

    def __init__(self, capacity: int, max_bytes: int) -> None:
        self.capacity = capacity
        self.max_bytes = max_bytes
        self._ticks: deque[tuple[int, list[bytes], int]] = deque()
        self.held_bytes = 0

    def add(self, seq: int, frames: list[bytes]) -> None:
        size_bytes = sum(len(frame) for frame in frames)
        self._ticks.append((seq, frames, size_bytes))
        self.held_bytes += size_bytes
        while len(self._ticks) > self.capacity or self.held_bytes > self.max_bytes:
            self.held_bytes -= self._ticks.popleft()[2]

    def __len__(self) -> int:
        return len(self._ticks)

    def held(self) -> tuple[int | None, int | None]:
        return (self._ticks[0][0], self._ticks[-1][0]) if self._ticks else (None, None)

    def describe(self) -> str:
        return f"up to {self.capacity:,} ticks / {self.max_bytes / 2**20:g} MiB as published"


def fill(path: Path, mode: str) -> ReplayBuffer | PublishedBuffer:
    """Build the buffer as the sampler does (or as it was) and add every tick of the file."""
    config = load_config(os.environ)
    buffer: ReplayBuffer | PublishedBuffer
    if mode == "as-published":
        buffer = PublishedBuffer(config.replay_ticks, config.replay_bytes)
    else:
        buffer = ReplayBuffer("bench", config.replay_ticks, config.replay_bytes)
    with path.open("rb") as source:
        for seq, frames in enumerate(read_ticks(source)):
            buffer.add(seq, frames)
    return buffer


def main(argv: list[str]) -> int:
    """Run the child's side of the exchange; return the exit status."""
    if len(argv) != 2 or argv[1] not in MODES:
        sys.stderr.write(__doc__.splitlines()[2] + "\n")
        return 2
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    sys.stdin.readline()
    buffer = fill(Path(argv[0]), argv[1])
    gc.collect()
    first_seq, last_seq = buffer.held()
    figures = {
        "held_ticks": len(buffer),
        "held_bytes": buffer.held_bytes,
        "first_seq": first_seq,
        "last_seq": last_seq,
        "bound": buffer.describe(),
    }
    sys.stdout.write(json.dumps(figures) + "\n")
    sys.stdout.flush()
    sys.stdin.read()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
