"""The sampler process: read every GPU on an aligned schedule and publish one tick each time."""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
import time
import uuid
from types import FrameType

import zmq

from common.config import Config, startup_config
from common.messages import MAX_MESSAGE_BYTES
from common.schedule import AlignedSchedule
from services.sampler.nvml import GpuReader, NvmlUnavailableError, load_nvml
from services.sampler.ticks import build_tick

log = logging.getLogger("services.sampler")

PUB_LINGER_MS = 1000  # long enough to hand the last tick over, short enough to never hang
STATS_EVERY_S = 3600.0


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Sampler:
    """The sampler loop as steps: wait for the next slot, read, publish."""

    def __init__(self, config: Config, reader: GpuReader, socket: zmq.Socket) -> None:
        self.config = config
        self.reader = reader
        self.socket = socket
        self.schedule = AlignedSchedule(config.interval_s)
        self.sampler_id = uuid.uuid4().hex[:16]
        self.seq = 0
        self.stopping = threading.Event()
        self._stats_since_cpu_s = _cpu_s()
        self._stats_since_ticks = 0
        self._stats_at = time.monotonic() + STATS_EVERY_S

    def request_stop(self, signum: int, _frame: FrameType | None = None) -> None:
        """Ask the loop to finish its step and exit (signal handler: only sets a flag)."""
        log.info("signal %d: stopping after the current step", signum)
        self.stopping.set()

    def wait_for_slot(self) -> float | None:
        """Sleep until the next aligned slot; return its time, or None when asked to stop."""
        tick_ts, deadline = self.schedule.next_tick()
        if self.stopping.wait(max(0.0, deadline - time.monotonic())):
            return None
        return tick_ts

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
        self.socket.send_multipart(message.to_frames())
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
            "published %d ticks (seq %d), %.2f ms CPU per tick",
            self._stats_since_ticks,
            self.seq,
            per_tick_ms,
        )
        self._stats_since_cpu_s, self._stats_since_ticks = cpu_s, 0
        self._stats_at = time.monotonic() + STATS_EVERY_S

    def run(self) -> None:
        """Tick until asked to stop."""
        while (tick_ts := self.wait_for_slot()) is not None:
            self.tick(tick_ts)


def main() -> int:
    """Run the sampler; return the process exit status."""
    config = startup_config(os.environ, "sampler")
    if config is None:
        return 2
    try:
        reader = GpuReader(load_nvml(config))
        reader.start()
    except NvmlUnavailableError as error:
        log.critical(
            "NVML was not found (%s): no NVIDIA driver is visible here. "
            "To run the demo on simulated GPUs, set PCW_SOURCE=simulated.",
            error,
        )
        return 1
    with zmq.Context() as context, context.socket(zmq.PUB) as socket:
        socket.setsockopt(zmq.LINGER, PUB_LINGER_MS)
        socket.setsockopt(zmq.SNDHWM, 10_000)
        socket.setsockopt(zmq.MAXMSGSIZE, MAX_MESSAGE_BYTES)
        try:
            socket.bind(config.pub_endpoint)
        except zmq.ZMQError as error:
            log.critical("cannot bind PCW_PUB_ENDPOINT=%s: %s", config.pub_endpoint, error)
            return 1
        sampler = Sampler(config, reader, socket)
        signal.signal(signal.SIGTERM, sampler.request_stop)
        signal.signal(signal.SIGINT, sampler.request_stop)
        log.info(
            "sampler %s publishing on %s every %g s (%s)",
            sampler.sampler_id,
            config.pub_endpoint,
            config.interval_s,
            config.source,
        )
        sampler.run()
        reader.close()
        log.info("sampler stopped after %d ticks", sampler.seq)
    return 0
