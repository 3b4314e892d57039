"""Publish the writer's status on a socket that needs no disk, for the web process's /healthz."""

from __future__ import annotations

import logging
from contextlib import suppress

import zmq

from common.status import WriterStatus, encode_status

log = logging.getLogger(__name__)


class StatusPublisher:
    """A PUB socket bound to the status endpoint; publishing never blocks and never fails."""

    def __init__(self, context: zmq.Context, endpoint: str) -> None:
        self.endpoint = endpoint
        self._socket: zmq.Socket | None = context.socket(zmq.PUB)
        self._socket.setsockopt(zmq.LINGER, 0)
        self._socket.setsockopt(zmq.SNDHWM, 16)  # a status replaces the last: a few suffice
        try:
            self._socket.bind(endpoint)
        except zmq.ZMQError as error:
            # Another writer on the same database, or a name taken: the file still carries it.
            log.error(
                "cannot publish the writer's status on %s (PCW_STATUS_ENDPOINT): %s; "
                "the web process reads it from the status file only",
                endpoint,
                error,
            )
            self._socket.close(linger=0)
            self._socket = None

    def publish(self, status: WriterStatus) -> None:
        """Send the status to every subscriber; drop it where a subscriber is not reading."""
        if self._socket is None:
            return
        with suppress(zmq.Again):  # a PUB drops rather than blocks; kept for safety
            self._socket.send_multipart(encode_status(status), zmq.NOBLOCK)

    def close(self) -> None:
        """Close the socket."""
        if self._socket is not None:
            self._socket.close(linger=0)
            self._socket = None
