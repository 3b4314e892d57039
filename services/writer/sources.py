"""The writer's sockets per sampler: a SUB for live ticks and a DEALER that asks for replays.

One pair per endpoint in PCW_SUBSCRIBE, so a gap is asked of the sampler it came from, and each
host's loss-free replay works on its own.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from dataclasses import dataclass, field

import zmq

from common.messages import STORING_TOPIC, TOPIC
from common.replay import (
    END_TOPIC,
    MAX_TICKS_PER_REPLY,
    ReplayEnd,
    ReplayRequest,
    decode_end,
    replay_endpoint,
)
from services.transport.curve import HubKeys
from services.transport.relink import (
    BROKEN_TEXT,
    MONITOR_EVENTS,
    Breaches,
    parse_monitor_event,
    relink,
)
from services.transport.sockets import hub_socket
from services.writer.sequences import SequenceTracker

log = logging.getLogger(__name__)

REPLAY_TIMEOUT_S = 5.0
RECEIVE_QUEUE = 100_000  # messages held unread per socket (ZMQ_RCVHWM)
REPLAY_ATTEMPTS = 6


@dataclass
class Watch:
    """A socket's monitor, to connect it again when libzmq drops it for good (see Breaches)."""

    socket: zmq.Socket
    endpoint: str
    monitor: zmq.Socket
    breaches: Breaches

    def take_events(self, now_s: float) -> None:
        """Read the monitor's events and schedule a reconnection when one is needed."""
        while True:
            try:
                event = parse_monitor_event(self.monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            self.breaches.take(event, now_s)

    def restore_if_due(self, now_s: float) -> bool:
        """Connect again if libzmq has not within RESTORE_AFTER_S; return whether it did."""
        if not self.breaches.due(now_s):
            return False
        log.warning("%s %s", self.endpoint, BROKEN_TEXT)
        return relink(self.socket, self.endpoint)

    def close(self) -> None:
        """Stop monitoring and close the monitor socket."""
        with suppress(zmq.ZMQError):
            self.socket.disable_monitor()
        self.monitor.close(linger=0)


def watch(socket: zmq.Socket, endpoint: str) -> Watch:
    """Connect socket to endpoint, watched by a monitor."""
    monitor = socket.get_monitor_socket(MONITOR_EVENTS)
    socket.connect(endpoint)
    return Watch(socket, endpoint, monitor, Breaches([endpoint]))


@dataclass
class Pending:
    """A replay request waiting for its answer."""

    request: ReplayRequest
    sent_at: float
    attempts: int = 1


@dataclass
class Source:
    """One sampler endpoint: its sockets and the replay requests it has not answered yet."""

    endpoint: str
    subscriber: zmq.Socket
    replayer: zmq.Socket
    watches: list[Watch] = field(default_factory=list)
    pending: dict[tuple[str, int], Pending] = field(default_factory=dict)

    def ask(self, request: ReplayRequest, now_s: float) -> None:
        """Send a replay request (or send it again)."""
        key = (request.sampler_id, request.from_seq)
        entry = self.pending.get(key)
        if entry is None:
            self.pending[key] = Pending(request, now_s)
        else:
            entry.sent_at, entry.attempts = now_s, entry.attempts + 1
        try:
            self.replayer.send_multipart(request.to_frames(), zmq.NOBLOCK)
        except zmq.Again:
            log.warning("replay request to %s not sent: its queue is full", self.endpoint)

    def close(self) -> None:
        """Close both sockets at once (linger 0)."""
        for each in self.watches:
            each.close()
        self.subscriber.close(linger=0)
        self.replayer.close(linger=0)


def open_source(context: zmq.Context, endpoint: str, keys: HubKeys | None = None) -> Source:
    """Connect a SUB to a sampler's ticks and a DEALER to its replay socket (CURVE with keys)."""
    subscriber = hub_socket(context, zmq.SUB, keys, topic=TOPIC, receive_queue=RECEIVE_QUEUE)
    subscriber.setsockopt(zmq.SUBSCRIBE, STORING_TOPIC)  # tells the sampler a writer is here
    replayer = hub_socket(context, zmq.DEALER, keys, receive_queue=RECEIVE_QUEUE)
    replayer.setsockopt(zmq.SNDHWM, 100)
    watches = [watch(subscriber, endpoint), watch(replayer, replay_endpoint(endpoint))]
    return Source(endpoint, subscriber, replayer, watches)


def settle(source: Source, end: ReplayEnd, tracker: SequenceTracker, now_s: float) -> None:
    """Act on the end of a reply: ask for the rest, or give up what the sampler no longer has."""
    request = end.request
    source.pending.pop((request.sampler_id, request.from_seq), None)
    sampler_id = request.sampler_id
    for lo, hi in tracker.outstanding(sampler_id, request.from_seq, request.to_seq):
        if end.sampler_id != sampler_id or end.held_from_seq is None:
            tracker.give_up(sampler_id, lo, hi, "that sampler run is over")
            continue
        assert end.held_to_seq is not None
        if lo < end.held_from_seq:
            cut = min(hi, end.held_from_seq - 1)
            tracker.give_up(sampler_id, lo, cut, "it has left the sampler's replay buffer")
            lo = cut + 1
        if lo > hi:
            continue
        if end.sent >= MAX_TICKS_PER_REPLY and lo <= end.held_to_seq:
            source.ask(ReplayRequest(sampler_id, lo, hi), now_s)  # a long gap comes in parts
        else:
            tracker.give_up(sampler_id, lo, hi, "the sampler did not send it")


def parse_end(frames: list[bytes]) -> ReplayEnd | None:
    """Return the ReplayEnd these frames hold, None if they are a tick; raise ReplayError."""
    return decode_end(frames) if frames and frames[0] == END_TOPIC else None


def retry_overdue(source: Source, tracker: SequenceTracker, now_s: float) -> float | None:
    """Ask again for replies that are overdue, give up after REPLAY_ATTEMPTS; return next due."""
    next_due = None
    for key, entry in list(source.pending.items()):
        request = entry.request
        if not tracker.outstanding(request.sampler_id, request.from_seq, request.to_seq):
            del source.pending[key]
            continue
        due = entry.sent_at + REPLAY_TIMEOUT_S
        if now_s >= due:
            if entry.attempts >= REPLAY_ATTEMPTS:
                del source.pending[key]
                tracker.give_up(
                    request.sampler_id,
                    request.from_seq,
                    request.to_seq,
                    f"no answer from {replay_endpoint(source.endpoint)}",
                )
                continue
            source.ask(request, now_s)
            due = now_s + REPLAY_TIMEOUT_S
        next_due = due if next_due is None else min(next_due, due)
    return next_due
