"""The writer's status as the web process sees it: live from the writer's socket, else its file.

The socket needs no disk, so a full or read-only disk under the database reaches /healthz at
once; the file (common.status) still answers for a writer the socket cannot reach. The newer of
the two wins. A message that is not a writer status is counted and dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import zmq
import zmq.asyncio

from common.status import STATUS_TOPIC, WriterStatus, decode_status, newest, read_status
from services.transport.sockets import hub_socket, receive_each

logger = logging.getLogger(__name__)

MAX_STATUS_MESSAGE_BYTES = 64 * 1024


class WriterStatusFeed:
    """Keep the newest status the writer published, and read its file when asked."""

    def __init__(self, db_path: Path) -> None:
        self._db_path = db_path
        self.live: WriterStatus | None = None
        self.malformed_messages = 0

    def handle(self, frames: list[bytes]) -> bool:
        """Take one message; return whether it was a writer status."""
        status = decode_status(frames)
        if status is None:
            self.malformed_messages += 1
            return False
        self.live = newest(self.live, status)
        return True

    def current(self) -> WriterStatus | None:
        """Return the writer's newest status, from the socket or the file, None if neither."""
        return newest(self.live, read_status(self._db_path))

    @asynccontextmanager
    async def listening(self, endpoint: str) -> AsyncIterator[None]:
        """Subscribe to the writer's status endpoint until the block exits."""
        context = zmq.asyncio.Context()
        socket = hub_socket(
            context,
            zmq.SUB,
            topic=STATUS_TOPIC,
            max_message_bytes=MAX_STATUS_MESSAGE_BYTES,
            receive_queue=16,
        )
        task: asyncio.Task[None] | None = None
        try:
            socket.connect(endpoint)
            logger.info("listening for the writer's status on %s", endpoint)
            task = asyncio.create_task(
                receive_each(socket, self.handle, "the writer's status", logger),
                name="pcw-writer-status",
            )
            yield
        finally:
            if task is not None:
                task.cancel()
                await asyncio.wait([task])
            socket.close(linger=0)
            context.term()
