"""The sampler process: read every GPU on an aligned schedule and publish one tick each time.

The first tick is read and published at start, as soon as a storing subscriber (the writer, a
hub's writer: it subscribes to STORING_TOPIC as well) has subscribed, or after START_WAIT_S
without one, so that a new user sees a reading within
seconds rather than at the first aligned slot; the ticks after it keep the aligned schedule. The
publishing socket is an XPUB for that: it hands the sampler each new subscription, which a PUB
socket keeps to itself (a tick published before a subscription reaches libzmq is dropped for that
subscriber). Subscriptions are read as they come, so their queue never grows.
"""

from __future__ import annotations

import logging
import os
import resource
import time
import uuid

import zmq

from common.config import Config, startup_config
from common.messages import STORING_TOPIC
from common.replay import replay_endpoint
from common.schedule import AlignedSchedule
from services.sampler.nvml import GpuReader, NvmlUnavailableError, load_nvml, process_resolver
from services.sampler.replay import MIB, ReplayBuffer, serve_pending
from services.sampler.ticks import build_tick
from services.transport.curve import (
    CurveSetupError,
    plaintext_refusal,
    sampler_keys,
    secure_sampler_socket,
)
from services.transport.wakeup import StopFlag

log = logging.getLogger("services.sampler")

PUB_LINGER_MS = 1000  # long enough to hand the last tick over, short enough to never hang
START_WAIT_S = 5.0  # the longest the first tick waits for a writer to subscribe
SUBSCRIBE = 1  # the first byte of an XPUB subscription message (0: unsubscription)
SUBSCRIPTION_MAX_BYTES = 256  # ours are b"\x01pcw.tick" and b"\x01pcw.store"; larger: dropped
STATS_EVERY_S = 3600.0


def _span(seconds: float) -> str:
    """Return a duration in seconds in the largest unit that keeps it readable."""
    for unit_s, unit in ((86400, "d"), (3600, "h"), (60, "min")):
        if seconds >= unit_s:
            return f"{seconds / unit_s:.3g} {unit}"
    return f"{seconds:.3g} s"


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sampler:
    """The sampler loop as steps: wait for the next slot (answering replays), read, publish."""

    def __init__(
        self, config: Config, reader: GpuReader, publisher: zmq.Socket, replayer: zmq.Socket
    ) -> None:
        self.config = config
        self.reader = reader
        self.socket = publisher
        self.replayer = replayer
        self.schedule = AlignedSchedule(config.interval_s)
        self.sampler_id = uuid.uuid4().hex[:16]
        self.replay = ReplayBuffer(self.sampler_id, config.replay_ticks, config.replay_bytes)
        self.seq = 0
        self.stop = StopFlag()
        self._poller = zmq.Poller()
        self._poller.register(replayer, zmq.POLLIN)
        self._poller.register(publisher, zmq.POLLIN)  # subscriptions
        self.storing = False  # a writer has subscribed (STORING_TOPIC)
        self.stop.register(self._poller)
        self._stats_since_cpu_s = _cpu_s()
        self._stats_since_ticks = 0
        self._stats_at = time.monotonic() + STATS_EVERY_S

    def wait_for_slot(self) -> float | None:
        """Sleep until the next aligned slot, answering replay requests meanwhile.

        Return the slot's time, or None when asked to stop.
        """
        tick_ts, deadline = self.schedule.next_tick()
        return tick_ts if self._wait(deadline) else None

    def first_tick(self) -> None:
        """Read and publish at once, when a first subscriber is there (START_WAIT_S at most).

        Skipped when the first aligned slot comes first: its tick is as early.
        """
        _, slot_deadline = self.schedule.next_tick()
        deadline = min(time.monotonic() + START_WAIT_S, slot_deadline)
        if self._wait(deadline, until_storing=True) and time.monotonic() < slot_deadline:
            self.tick(self.schedule.now())

    def _wait(self, deadline: float, until_storing: bool = False) -> bool:
        """Answer replay requests and take subscriptions until the monotonic deadline.

        With until_storing, return as soon as a storing subscriber (a writer) has subscribed: a
        tick published before it subscribed would reach the web alone. Return False when asked
        to stop.
        """
        while not self.stop.stopping:
            remaining_s = deadline - time.monotonic()
            if remaining_s <= 0 or (until_storing and self.storing):
                return True
            for polled, _ in self._poller.poll(remaining_s * 1000):
                if polled is self.replayer:
                    serve_pending(self.replayer, self.replay)
                elif polled is self.socket:
                    self._take_subscriptions()
                elif self.stop.is_source(polled):
                    self.stop.drain()
        return False

    def _take_subscriptions(self) -> None:
        """Read every pending (un)subscription message of the XPUB socket."""
        while True:
            try:
                message = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if message[:1] == bytes([SUBSCRIBE]):
                self.storing = self.storing or message[1:] == STORING_TOPIC

    def tick(self, tick_ts: float) -> None:
        """Read every GPU and publish one message with one timestamp."""
        skipped = self.schedule.skipped_slots(tick_ts)
        if skipped:
            log.warning("%d tick(s) skipped: the previous tick ran late", skipped)
        reading = self.reader.read()
        message = build_tick(
            reading,
            self.config.host_name,
            self.sampler_id,
            self.seq,
            tick_ts,
            self.config.interval_s,
        )
        frames = message.to_frames()
        self.socket.send_multipart(frames)
        self.replay.add(self.seq, frames)
        self.seq += 1
        self.schedule.mark_done(tick_ts)
        self._log_stats()

    def _log_stats(self) -> None:
        self._stats_since_ticks += 1
        if time.monotonic() < self._stats_at:
            return
        cpu_s = _cpu_s()
        per_tick_ms = 1000 * (cpu_s - self._stats_since_cpu_s) / self._stats_since_ticks
        log.info(
            "published %d ticks (seq %d), %.2f ms CPU per tick; replay holds %d ticks (%.1f MiB)",
            self._stats_since_ticks,
            self.seq,
            per_tick_ms,
            len(self.replay),
            self.replay.held_bytes / MIB,
        )
        self._stats_since_cpu_s, self._stats_since_ticks = cpu_s, 0
        self._stats_at = time.monotonic() + STATS_EVERY_S

    def run(self) -> None:
        """Tick at once, then on the aligned schedule until asked to stop."""
        self.first_tick()
        while (tick_ts := self.wait_for_slot()) is not None:
            self.tick(tick_ts)


def wait_without_source(config: Config) -> int:
    """Read and publish nothing (PCW_SOURCE=none, a hub); wait for SIGTERM or SIGINT; return 0.

    Staying up, rather than exiting, keeps supervisord from restarting the program until it
    gives up on it (FATAL); the hub's writer and web read the samplers of PCW_SUBSCRIBE.
    """
    stop = StopFlag()
    stop.install()
    poller = zmq.Poller()
    stop.register(poller)
    log.info(
        "PCW_SOURCE=none: this host's GPUs are not read, nothing is published; "
        "the writer and web read %s",
        ", ".join(config.subscribe),
    )
    while not stop.stopping:
        for polled, _ in poller.poll():
            if stop.is_source(polled):
                stop.drain()
    log.info("sampler stopped (PCW_SOURCE=none)")
    return 0


def main() -> int:
    """Run the sampler; return the process exit status."""
    config = startup_config(os.environ, "sampler")
    if config is None:
        return 2
    if config.source == "none":
        return wait_without_source(config)
    try:
        keys = sampler_keys(config)
    except CurveSetupError as error:
        log.critical("sampler cannot start, bad setting: %s", error)
        return 2
    refusal = plaintext_refusal(config, keys)
    if refusal is not None:
        log.critical("sampler cannot start: %s", refusal)
        return 2
    try:
        nvml = load_nvml(config)
        reader = GpuReader(nvml, resolver=process_resolver(config, nvml), host=config.host_name)
        reader.start()
    except NvmlUnavailableError as error:
        log.critical(
            "NVML was not found (%s): no NVIDIA driver is visible here. "
            "To run the demo on simulated GPUs, set PCW_SOURCE=simulated.",
            error,
        )
        return 1
    with zmq.Context() as context:
        publisher = context.socket(zmq.XPUB)
        publisher.setsockopt(zmq.LINGER, PUB_LINGER_MS)
        publisher.setsockopt(zmq.SNDHWM, 10_000)
        publisher.setsockopt(zmq.MAXMSGSIZE, SUBSCRIPTION_MAX_BYTES)  # what it receives only
        replayer = context.socket(zmq.ROUTER)
        replayer.setsockopt(zmq.LINGER, 0)
        replayer.setsockopt(zmq.MAXMSGSIZE, 4096)
        for socket in (publisher, replayer):
            secure_sampler_socket(socket, keys)
        try:
            for socket, endpoint in (
                (publisher, config.pub_endpoint),
                (replayer, replay_endpoint(config.pub_endpoint)),
            ):
                socket.bind(endpoint)
        except zmq.ZMQError as error:
            log.critical("cannot bind %s (from PCW_PUB_ENDPOINT): %s", endpoint, error)
            return 1
        sampler = Sampler(config, reader, publisher, replayer)
        sampler.stop.install()
        log.info(
            "sampler %s publishing on %s (replay on %s) every %g s (%s, %s)",
            sampler.sampler_id,
            config.pub_endpoint,
            replay_endpoint(config.pub_endpoint),
            config.interval_s,
            config.source,
            "plain text" if keys is None else "CURVE",
        )
        log.info(
            "replay keeps %s, whichever is reached first (%s at %g s if the ticks fit)",
            sampler.replay.describe(),
            _span(config.replay_ticks * config.interval_s),
            config.interval_s,
        )
        sampler.run()
        reader.close()
        publisher.close()
        replayer.close()
        log.info("sampler stopped after %d ticks", sampler.seq)
    return 0
