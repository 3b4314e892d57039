"""The replay protocol in units: gap tracking, settling replies, retries, the sampler's buffer.

Requests and replies go over a real ROUTER/DEALER pair (inproc) between a Source and a
ReplayBuffer; every expected range and count below is worked out by hand from the sequence
numbers sent.
"""

from __future__ import annotations

import logging
import time
import uuid
from typing import Any

import msgspec
import pytest
import zmq
from hypothesis import given
from hypothesis import strategies as st

from common.config import load_config
from common.messages import GpuProcess, GpuReading, Tick
from common.replay import (
    END_TOPIC,
    MAX_TICKS_PER_REPLY,
    REQUEST_TOPIC,
    ReplayEnd,
    ReplayError,
    ReplayRequest,
    decode_end,
    decode_request,
    replay_endpoint,
)
from services.sampler.replay import ReplayBuffer, TickPacker, serve_pending
from services.writer.main import Writer
from services.writer.sequences import SequenceTracker
from services.writer.sources import (
    REPLAY_ATTEMPTS,
    REPLAY_TIMEOUT_S,
    Source,
    parse_end,
    retry_overdue,
    settle,
)
from services.writer.store import Store
from tests.conftest import numbered_tick
from tests.fuzzing import fuzz, mutate

WAIT_S = 10.0
HOST = "h1"
RUN = "run-1"


def tick(seq: int, sampler_id: str = RUN, host: str = HOST) -> Tick:
    reading = GpuReading(index=0, uuid=f"GPU-{host}", name="T", util_gpu_pct=seq % 101)
    return Tick(
        host=host,
        sampler_id=sampler_id,
        seq=seq,
        ts=1_700_000_000.0 + seq,
        interval_s=1.0,
        gpus=[reading],
    )


# -- the sequence tracker ---------------------------------------------------------------------


def test_a_single_missed_tick_is_a_gap_asked_for_and_counted_when_lost():
    tracker = SequenceTracker()
    assert [tracker.observe(RUN, HOST, seq) for seq in (0, 1)] == [None, None]
    assert tracker.observe(RUN, HOST, 3) == (2, 2)
    assert tracker.outstanding(RUN, 0, 10) == [(2, 2)]
    assert tracker.positions() == {RUN: (HOST, 1)}
    assert tracker.give_up(RUN, 2, 2, "test") == 1
    assert (tracker.gaps, tracker.lost_ticks) == (1, 1)
    assert tracker.positions() == {RUN: (HOST, 3)}


def test_consecutive_ticks_open_no_gap():
    tracker = SequenceTracker()
    assert [tracker.observe(RUN, HOST, seq) for seq in range(5)] == [None] * 5
    assert tracker.outstanding(RUN, 0, 10) == []
    assert tracker.positions() == {RUN: (HOST, 4)}


def test_a_new_run_starting_late_asks_for_its_first_ticks():
    tracker = SequenceTracker()
    assert tracker.observe(RUN, HOST, 3) == (0, 2)
    assert tracker.positions() == {RUN: (HOST, -1)}


def test_out_of_order_and_duplicate_ticks_fill_the_gap_once():
    tracker = SequenceTracker()
    tracker.observe(RUN, HOST, 0)
    assert tracker.observe(RUN, HOST, 6) == (1, 5)
    assert tracker.observe(RUN, HOST, 3) is None  # splits the gap
    assert tracker.outstanding(RUN, 0, 10) == [(1, 2), (4, 5)]
    assert tracker.observe(RUN, HOST, 3) is None  # a duplicate changes nothing
    assert tracker.observe(RUN, HOST, 6) is None
    assert tracker.observe(RUN, HOST, 0) is None
    assert tracker.outstanding(RUN, 0, 10) == [(1, 2), (4, 5)]
    assert tracker.positions() == {RUN: (HOST, 0)}
    for seq, position in ((2, 0), (1, 3), (5, 3), (4, 6)):
        tracker.observe(RUN, HOST, seq)
        assert tracker.positions() == {RUN: (HOST, position)}, seq
    assert tracker.outstanding(RUN, 0, 10) == []
    assert tracker.give_up(RUN, 0, 6, "test") == 0
    assert (tracker.gaps, tracker.lost_ticks) == (0, 0)


def test_outstanding_is_clipped_to_the_range_asked():
    tracker = SequenceTracker()
    tracker.observe(RUN, HOST, 0)
    tracker.observe(RUN, HOST, 10)  # 1-9
    tracker.observe(RUN, HOST, 5)  # 1-4, 6-9
    assert tracker.outstanding(RUN, 3, 7) == [(3, 4), (6, 7)]
    assert tracker.outstanding(RUN, 4, 4) == [(4, 4)]
    assert tracker.outstanding(RUN, 5, 5) == []
    assert tracker.outstanding(RUN, 5, 6) == [(6, 6)]  # a gap that starts at the end asked
    assert tracker.outstanding(RUN, 9, 20) == [(9, 9)]
    assert tracker.outstanding(RUN, 10, 20) == []
    assert tracker.outstanding("other", 0, 20) == []


def test_giving_up_part_of_a_gap_keeps_the_rest_outstanding():
    tracker = SequenceTracker()
    tracker.observe(RUN, HOST, 0)
    tracker.observe(RUN, HOST, 11)  # 1-10
    assert tracker.give_up(RUN, 4, 6, "test") == 3
    assert tracker.outstanding(RUN, 0, 20) == [(1, 3), (7, 10)]
    assert tracker.give_up(RUN, 0, 2, "test") == 2  # only 1 and 2 were outstanding
    assert tracker.give_up(RUN, 10, 30, "test") == 1
    assert tracker.outstanding(RUN, 0, 20) == [(3, 3), (7, 9)]
    assert (tracker.gaps, tracker.lost_ticks) == (3, 6)
    assert tracker.give_up(RUN, 0, 8, "test") == 3  # 3, 7 and 8: two ranges in one
    assert tracker.outstanding(RUN, 0, 20) == [(9, 9)]
    assert (tracker.gaps, tracker.lost_ticks) == (4, 9)
    assert tracker.give_up("never-seen", 0, 5, "test") == 0
    assert (tracker.gaps, tracker.lost_ticks) == (4, 9)


def test_a_gap_given_up_is_logged_with_its_host_range_and_reason(caplog):
    tracker = SequenceTracker()
    tracker.observe(RUN, HOST, 0)
    tracker.observe(RUN, HOST, 4)
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        tracker.give_up(RUN, 1, 3, "why not")
    assert caplog.messages == [
        "gap of 3 tick(s) from host h1 (run run-1, seq 1-3) cannot be filled: why not"
    ]


def test_a_restarted_sampler_gives_up_the_gaps_of_its_earlier_run_only(caplog):
    tracker = SequenceTracker()
    for seq in (0, 5, 8):  # run-1 misses 1-4 and 6-7
        tracker.observe(RUN, HOST, seq)
    for seq in (0, 3):  # h2's run misses 1-2
        tracker.observe("run-h2", "h2", seq)
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        assert tracker.observe("run-2", HOST, 0) is None
    assert caplog.messages == [
        f"gap of {n} tick(s) from host h1 (run run-1, seq {seqs}) cannot be filled: "
        "the sampler restarted since"
        for n, seqs in ((4, "1-4"), (2, "6-7"))
    ]
    assert (tracker.gaps, tracker.lost_ticks) == (2, 6)
    assert tracker.outstanding(RUN, 0, 10) == []
    assert set(tracker.positions()) == {"run-h2", "run-2"}
    assert tracker.outstanding("run-h2", 0, 10) == [(1, 2)]


def test_a_writer_restart_starts_from_the_persisted_position_and_asks_again():
    first = SequenceTracker()
    for seq in (0, 1, 3, 4):
        first.observe(RUN, HOST, seq)
    positions = first.positions()
    assert positions == {RUN: (HOST, 1)}  # 2 is still open: the position stays below it
    second = SequenceTracker(positions)
    assert second.observe(RUN, HOST, 5) == (2, 4)  # 3 and 4 again: storing is idempotent
    other = SequenceTracker({RUN: (HOST, 7)})
    assert other.observe(RUN, HOST, 8) is None  # nothing missed since the position
    assert other.observe("run-new", HOST, 0) is None  # a new run replaces the persisted one
    assert other.positions() == {"run-new": (HOST, 0)}


def test_a_writer_restart_keeps_an_open_gap_through_the_database(tmp_path):
    db_path = tmp_path / "gpu_stats.db"
    config = load_config({"PCW_DB_PATH": str(db_path), "PCW_HOST_NAME": "w"})
    store = Store(db_path)
    writer = Writer(config, [], store)
    for seq in (0, 1, 3, 4):
        assert writer.accept(tick(seq).to_frames())
    writer.flush(force=True)
    assert store.positions() == {RUN: (HOST, 1)}
    store.close()
    store = Store(db_path)
    writer = Writer(config, [], store)
    assert writer.accept(tick(5).to_frames())
    assert writer.tracker.outstanding(RUN, 0, 10) == [(2, 4)]
    store.close()


# -- the sampler's replay buffer ---------------------------------------------------------------


def filled_buffer(first: int, last: int, capacity: int = 10_000) -> ReplayBuffer:
    buffer = ReplayBuffer(RUN, capacity)
    for seq in range(first, last + 1):
        buffer.add(seq, tick(seq).to_frames())
    return buffer


def answered(buffer: ReplayBuffer, request: ReplayRequest) -> tuple[list[int], ReplayEnd]:
    *ticks, end_frames = buffer.answer(request.to_frames())
    end = parse_end(end_frames)
    assert end is not None
    assert all(parse_end(frames) is None for frames in ticks)
    return [Tick.from_frames(frames).seq for frames in ticks], end


def test_the_buffer_holds_the_newest_ticks_up_to_its_capacity():
    buffer = ReplayBuffer(RUN, 5)
    assert buffer.held() == (None, None)
    for seq in range(12):
        buffer.add(seq, tick(seq).to_frames())
    assert buffer.held() == (7, 11)


def test_the_buffer_sends_what_it_holds_of_the_range_asked():
    buffer = filled_buffer(10, 19)
    seqs, end = answered(buffer, ReplayRequest(RUN, 12, 14))
    assert seqs == [12, 13, 14]
    assert end == ReplayEnd(ReplayRequest(RUN, 12, 14), RUN, 3, 10, 19)
    seqs, end = answered(buffer, ReplayRequest(RUN, 5, 11))  # partly gone
    assert (seqs, end.sent) == ([10, 11], 2)
    seqs, end = answered(buffer, ReplayRequest(RUN, 18, 30))  # partly not yet there
    assert (seqs, end.sent) == ([18, 19], 2)
    seqs, end = answered(buffer, ReplayRequest(RUN, 19, 19))
    assert seqs == [19]
    seqs, end = answered(buffer, ReplayRequest(RUN, 10, 10))
    assert seqs == [10]
    seqs, end = answered(buffer, ReplayRequest(RUN, 0, 9))
    assert (seqs, end.sent, end.held_from_seq, end.held_to_seq) == ([], 0, 10, 19)
    assert buffer.requests == 6


def test_the_buffer_sends_at_most_one_reply_worth_of_ticks():
    buffer = filled_buffer(0, MAX_TICKS_PER_REPLY + 500)
    seqs, end = answered(buffer, ReplayRequest(RUN, 100, MAX_TICKS_PER_REPLY + 400))
    assert seqs == list(range(100, 100 + MAX_TICKS_PER_REPLY))
    assert end.sent == MAX_TICKS_PER_REPLY


def test_the_buffer_of_another_run_or_an_empty_one_sends_only_the_end():
    buffer = filled_buffer(0, 9)
    seqs, end = answered(buffer, ReplayRequest("old-run", 0, 9))
    assert seqs == [] and end == ReplayEnd(ReplayRequest("old-run", 0, 9), RUN, 0, 0, 9)
    seqs, end = answered(ReplayBuffer(RUN, 5), ReplayRequest(RUN, 0, 9))
    assert seqs == [] and (end.sent, end.held_from_seq, end.held_to_seq) == (0, None, None)


def large_tick(seq: int, gpus: int = 64) -> Tick:
    """Return a tick of `gpus` GPUs with a process each; every seq below 128 has the same size."""

    def values(index: int) -> dict[str, Any]:
        process = GpuProcess(pid=1000 + index, name="python", cmdline="python train.py")
        return {"util_gpu_pct": seq % 101, "processes": [process]}

    ts = 1_700_000_000.0 + seq
    return numbered_tick(HOST, RUN, seq, ts, 1.0, gpus, "NVIDIA H100 80GB HBM3", values)


def frame_bytes(frames: list[bytes]) -> int:
    return sum(len(frame) for frame in frames)


def large_sizes(count: int = 64) -> list[int]:
    """Return the packed bytes of large_tick(seq), seq from 0, in a buffer that began with them."""
    packer = TickPacker()
    return [packer.packed_bytes(large_tick(seq).to_frames()) for seq in range(count)]


def room_for_ten_large_ticks() -> int:
    """Return a byte bound that holds any ten consecutive large ticks of seq below 64, never
    eleven."""
    sizes = large_sizes()
    ten = max(sum(sizes[first : first + 10]) for first in range(len(sizes) - 9))
    assert ten < min(sum(sizes[first : first + 11]) for first in range(len(sizes) - 10))
    return ten


def test_the_buffer_keeps_ticks_compressed_and_replays_them_unchanged():
    sent = [large_tick(seq).to_frames() for seq in range(10)] + [tick(10).to_frames()]
    buffer, packer = ReplayBuffer(RUN, 100), TickPacker()
    for seq, frames in enumerate(sent):
        buffer.add(seq, frames)
    assert buffer.held_bytes == sum(packer.packed_bytes(frames) for frames in sent)
    assert buffer.held_bytes * 10 < sum(frame_bytes(frames) for frames in sent)
    *replayed, _ = buffer.answer(ReplayRequest(RUN, 0, 10).to_frames())
    assert replayed == sent


def test_ticks_unlike_the_first_are_still_kept_and_replayed_unchanged():
    sent = [tick(0).to_frames(), tick(1, sampler_id="other").to_frames()]
    sent += [large_tick(seq).to_frames() for seq in range(2, 5)]
    sent += [Tick(host=HOST, sampler_id=RUN, seq=5, ts=1.0, interval_s=1.0, gpus=[]).to_frames()]
    buffer = ReplayBuffer(RUN, 100)
    for seq, frames in enumerate(sent):
        buffer.add(seq, frames)
    *replayed, _ = buffer.answer(ReplayRequest(RUN, 0, 5).to_frames())
    assert replayed == sent


def test_a_byte_bound_keeps_only_the_newest_ticks_that_fit():
    sizes = large_sizes()
    max_bytes = room_for_ten_large_ticks()
    buffer = ReplayBuffer(RUN, 10_000, max_bytes)
    for seq in range(64):
        buffer.add(seq, large_tick(seq).to_frames())
        first = max(0, seq - 9)
        assert buffer.held() == (first, seq)
        assert buffer.held_bytes == sum(sizes[first : seq + 1]) <= max_bytes, seq
    assert len(buffer) == 10
    assert ReplayBuffer(RUN, 10_000, 11 << 19).describe() == "up to 10,000 ticks / 5.5 MiB"


def test_the_tick_bound_still_holds_under_a_byte_bound_that_is_not_reached():
    buffer = ReplayBuffer(RUN, 5, 1 << 30)
    for seq in range(64):
        buffer.add(seq, large_tick(seq).to_frames())
    assert buffer.held() == (59, 63)
    assert buffer.held_bytes == sum(large_sizes()[59:])
    assert buffer.describe() == "up to 5 ticks / 1,024 MiB"
    assert ReplayBuffer(RUN, 1440).describe() == "up to 1,440 ticks"  # no byte bound


def test_a_byte_bound_of_exactly_one_tick_holds_the_newest_tick():
    sizes = large_sizes(3)
    buffer = ReplayBuffer(RUN, 100, max(sizes))
    for seq in range(3):
        buffer.add(seq, large_tick(seq).to_frames())
        assert (buffer.held(), buffer.held_bytes) == ((seq, seq), sizes[seq])
    assert buffer.too_large == 0


def test_a_replay_of_ticks_the_byte_bound_evicted_sends_what_is_still_held():
    buffer = ReplayBuffer(RUN, 10_000, room_for_ten_large_ticks())
    for seq in range(64):
        buffer.add(seq, large_tick(seq).to_frames())
    seqs, end = answered(buffer, ReplayRequest(RUN, 40, 60))  # 40-53 have left it
    assert seqs == list(range(54, 61))
    assert end == ReplayEnd(ReplayRequest(RUN, 40, 60), RUN, 7, 54, 63)
    seqs, end = answered(buffer, ReplayRequest(RUN, 0, 53))  # all of it has left
    assert (seqs, end.sent, end.held_from_seq, end.held_to_seq) == ([], 0, 54, 63)


def test_a_writer_counts_what_the_byte_bound_evicted_as_lost_and_gets_the_rest(link, caplog):
    buffer = ReplayBuffer(RUN, 10_000, room_for_ten_large_ticks())
    for seq in range(64):
        buffer.add(seq, large_tick(seq).to_frames())
    rig = link(buffer)
    rig.see(0, 63)  # asks 1-62; the buffer holds 54-63
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        assert rig.round() == 1
    assert rig.asked == [(1, 62)]
    assert rig.tracker.outstanding(RUN, 0, 63) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 53)  # 1-53; 54-62 replayed
    assert caplog.messages == [
        "gap of 53 tick(s) from host h1 (run run-1, seq 1-53) cannot be filled: "
        "it has left the sampler's replay buffer"
    ]
    assert rig.source.pending == {}


def test_a_tick_larger_than_the_byte_bound_empties_the_buffer_and_is_logged_once(caplog):
    packer = TickPacker()
    small_bytes = packer.packed_bytes(tick(0).to_frames())  # the first tick: the dictionary
    max_bytes = min(packer.packed_bytes(large_tick(seq).to_frames()) for seq in (5, 7)) - 1
    assert 2 * small_bytes < max_bytes  # small ticks fit, large ones do not
    buffer = ReplayBuffer(RUN, 100, max_bytes)
    for seq in range(5):
        buffer.add(seq, tick(seq).to_frames())
    with caplog.at_level(logging.WARNING, logger="services.sampler.replay"):
        buffer.add(5, large_tick(5).to_frames())  # over the bound on its own
        assert (buffer.held(), buffer.held_bytes) == ((None, None), 0)
        buffer.add(6, tick(6).to_frames())
        assert buffer.held() == (6, 6)  # no older tick behind a hole
        buffer.add(7, large_tick(7).to_frames())
    assert buffer.too_large == 2
    assert len(caplog.messages) == 1
    assert caplog.messages[0].startswith("tick 5 (")
    assert "larger than the replay buffer (PCW_REPLAY_BYTES=" in caplog.messages[0]


def test_a_bad_request_gets_no_answer_and_is_counted(caplog):
    buffer = filled_buffer(0, 9)
    with caplog.at_level(logging.INFO, logger="services.sampler.replay"):
        assert buffer.answer([b"pcw.replay?", b"\xc1"]) == []
        assert buffer.answer([b"pcw.replay."]) == []
        answered(buffer, ReplayRequest(RUN, 3, 4))
    assert (buffer.bad_requests, buffer.requests) == (2, 1)
    assert caplog.messages[1:] == [
        "ignored a bad replay request: not a b'pcw.replay?' message (1 frames)",
        "replayed 2 ticks of 3-4 for a subscriber",
    ]
    assert caplog.messages[0].startswith("ignored a bad replay request: bad replay payload: ")


# -- a Source asking a ReplayBuffer over a real ROUTER/DEALER pair -----------------------------


class Link:
    """A writer-side Source whose DEALER reaches a sampler-side ROUTER and ReplayBuffer."""

    def __init__(self, context: zmq.Context, buffer: ReplayBuffer) -> None:
        address = f"inproc://replay-{uuid.uuid4().hex}"
        self.router = context.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.SNDHWM, 0)  # a ROUTER drops what is over its bound
        self.router.bind(address)
        dealer = context.socket(zmq.DEALER)
        dealer.setsockopt(zmq.RCVHWM, 100_000)  # as open_source sets it
        dealer.connect(address)
        self.source = Source("tcp://sampler:5555", context.socket(zmq.SUB), dealer)
        self.buffer = buffer
        self.tracker = SequenceTracker()
        self.now_s = 100.0
        self.asked: list[tuple[int, int]] = []

    def close(self) -> None:
        self.source.close()
        self.router.close(linger=0)

    def see(self, *seqs: int) -> None:
        """Take live ticks as the writer does: a gap they open is asked for."""
        for seq in seqs:
            gap = self.tracker.observe(RUN, HOST, seq)
            if gap:
                self.source.ask(ReplayRequest(RUN, *gap), self.now_s)

    def serve(self) -> int:
        """Answer every request sent so far; return how many."""
        served = 0
        while self.router.poll(0 if served else int(WAIT_S * 1000)):
            identity, *frames = self.router.recv_multipart(zmq.NOBLOCK)
            request = decode_request(frames)
            self.asked.append((request.from_seq, request.to_seq))
            for reply in self.buffer.answer(frames):
                self.router.send_multipart([identity, *reply])
            served += 1
        return served

    def replies(self, ends: int) -> list[list[bytes]]:
        """Receive messages until `ends` replies have closed."""
        messages: list[list[bytes]] = []
        closed = 0
        deadline = time.monotonic() + WAIT_S
        while closed < ends:
            assert time.monotonic() < deadline, "the replies never came"
            if self.source.replayer.poll(100):
                messages.append(self.source.replayer.recv_multipart())
                closed += parse_end(messages[-1]) is not None
        return messages

    def take(self, messages: list[list[bytes]]) -> None:
        """Act on replies as the writer does: ticks fill gaps, ends settle requests."""
        for frames in messages:
            end = parse_end(frames)
            if end is None:
                replayed = Tick.from_frames(frames)
                self.tracker.observe(replayed.sampler_id, replayed.host, replayed.seq)
            else:
                settle(self.source, end, self.tracker, self.now_s)

    def round(self) -> int:
        """Serve the pending requests and take their replies; return how many were served."""
        served = self.serve()
        self.take(self.replies(served))
        return served


@pytest.fixture
def link(zmq_context):
    made: list[Link] = []

    def make(buffer: ReplayBuffer) -> Link:
        made.append(Link(zmq_context, buffer))
        return made[-1]

    yield make
    for each in made:
        each.close()


def test_serve_pending_answers_every_waiting_request_and_then_returns(link):
    rig = link(filled_buffer(0, 9))
    rig.see(0, 2, 4)  # asks 1-1 and 3-3
    assert rig.router.poll(int(WAIT_S * 1000))
    deadline = time.monotonic() + WAIT_S
    answered = 0
    while answered < 2:
        assert time.monotonic() < deadline
        answered += serve_pending(rig.router, rig.buffer)
    assert answered == rig.buffer.requests == 2
    assert serve_pending(rig.router, rig.buffer) == 0
    rig.take(rig.replies(2))
    assert rig.tracker.outstanding(RUN, 0, 4) == []
    assert rig.source.pending == {}


def test_a_single_missed_tick_is_replayed(link):
    rig = link(filled_buffer(0, 3))
    rig.see(0, 1, 3)
    assert rig.round() == 1
    assert rig.asked == [(2, 2)]
    assert rig.tracker.outstanding(RUN, 0, 3) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (0, 0)
    assert rig.source.pending == {}
    assert rig.tracker.positions() == {RUN: (HOST, 3)}


def test_a_gap_longer_than_one_reply_is_asked_for_in_parts(link):
    last = 2 * MAX_TICKS_PER_REPLY + 501
    rig = link(filled_buffer(0, last))
    rig.see(0, last)
    rounds = 0
    while rig.source.pending:
        assert rig.round() == 1
        rounds += 1
        assert rounds <= 3
    first, second = 1, 1 + MAX_TICKS_PER_REPLY
    assert rig.asked == [
        (first, last - 1),
        (second, last - 1),
        (second + MAX_TICKS_PER_REPLY, last - 1),
    ]
    assert rig.tracker.outstanding(RUN, 0, last) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (0, 0)


def test_a_gap_of_exactly_one_reply_needs_no_second_request(link):
    last = MAX_TICKS_PER_REPLY + 1
    rig = link(filled_buffer(0, last))
    rig.see(0, last)
    assert rig.round() == 1
    assert rig.source.pending == {}
    assert rig.asked == [(1, MAX_TICKS_PER_REPLY)]
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (0, 0)


def test_what_has_left_the_buffer_is_given_up_and_the_rest_replayed(link):
    rig = link(filled_buffer(0, 20, capacity=10))  # holds 11-20
    rig.see(0, 20)  # 1-19 missing
    assert rig.round() == 1
    assert rig.tracker.outstanding(RUN, 0, 20) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 10)  # 1-10 lost
    assert rig.source.pending == {}


def test_ticks_the_sampler_did_not_send_are_given_up(link, caplog):
    rig = link(filled_buffer(0, 5))
    rig.see(0, 5)  # asks 1-4
    request = ReplayRequest(RUN, 1, 4)
    rig.tracker.observe(RUN, HOST, 2)  # one came, three did not
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        settle(rig.source, ReplayEnd(request, RUN, 1, 0, 5), rig.tracker, rig.now_s)
    assert rig.tracker.outstanding(RUN, 0, 5) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (2, 3)  # 1, and 3-4
    assert rig.source.pending == {}
    assert caplog.messages == [
        f"gap of {n} tick(s) from host h1 (run run-1, seq {seqs}) cannot be filled: "
        "the sampler did not send it"
        for n, seqs in ((1, "1-1"), (2, "3-4"))
    ]


def test_a_gap_across_the_buffers_start_loses_only_what_left_it(link, caplog):
    # the end says: 2000 sent (a full reply) from a buffer holding 1001-9000, and none arrived
    rig = link(ReplayBuffer(RUN, 10))
    rig.see(0, 5000)  # asks 1-4999
    rig.tracker.observe(RUN, HOST, 8)  # 1-7 and 9-4999 missing
    request = ReplayRequest(RUN, 1, 4999)
    end = ReplayEnd(request, RUN, MAX_TICKS_PER_REPLY, 1001, 9000)
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        settle(rig.source, end, rig.tracker, rig.now_s)
    assert caplog.messages == [
        f"gap of {n} tick(s) from host h1 (run run-1, seq {seqs}) cannot be filled: "
        "it has left the sampler's replay buffer"
        for n, seqs in ((7, "1-7"), (992, "9-1000"))
    ]
    assert [entry.request for entry in rig.source.pending.values()] == [
        ReplayRequest(RUN, 1001, 4999)  # the rest is still held: asked again from 1001
    ]
    assert rig.tracker.outstanding(RUN, 0, 5000) == [(1001, 4999)]
    due = retry_overdue(rig.source, rig.tracker, rig.now_s)
    assert due == rig.now_s + REPLAY_TIMEOUT_S


def test_the_rest_of_a_full_reply_is_asked_for_from_the_last_tick_held(link):
    rig = link(ReplayBuffer(RUN, 10))
    rig.see(0, 2501)  # asks 1-2500
    for seq in range(1, MAX_TICKS_PER_REPLY + 1):
        rig.tracker.observe(RUN, HOST, seq)
    end = ReplayEnd(ReplayRequest(RUN, 1, 2500), RUN, MAX_TICKS_PER_REPLY, 0, 2001)
    settle(rig.source, end, rig.tracker, rig.now_s)
    assert [entry.request for entry in rig.source.pending.values()] == [
        ReplayRequest(RUN, 2001, 2500)  # 2001 is still held: the sampler can send it
    ]
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (0, 0)


def test_a_request_that_cannot_be_sent_is_kept_to_be_asked_again(zmq_context, caplog):
    dealer = zmq_context.socket(zmq.DEALER)  # connected to nothing: a send would block
    source = Source("tcp://gone:5555", zmq_context.socket(zmq.SUB), dealer)
    try:
        with caplog.at_level(logging.WARNING, logger="services.writer.sources"):
            source.ask(ReplayRequest(RUN, 1, 2), 50.0)
        assert caplog.messages == ["replay request to tcp://gone:5555 not sent: its queue is full"]
        assert source.pending[RUN, 1].sent_at == 50.0
    finally:
        source.close()


def test_a_full_reply_past_what_the_sampler_holds_is_not_asked_again(link):
    last = MAX_TICKS_PER_REPLY + 100
    rig = link(filled_buffer(0, last))
    rig.see(0, last)
    request = ReplayRequest(RUN, 1, last - 1)
    for seq in range(1, MAX_TICKS_PER_REPLY + 1):
        rig.tracker.observe(RUN, HOST, seq)
    held_to = MAX_TICKS_PER_REPLY  # the sampler holds nothing after the ticks it sent
    end = ReplayEnd(request, RUN, MAX_TICKS_PER_REPLY, 0, held_to)
    settle(rig.source, end, rig.tracker, rig.now_s)
    assert rig.source.pending == {}
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 99)
    rig.see(last + 5)  # 2101-2104 missing
    later = ReplayRequest(RUN, last + 1, last + 4)
    short = ReplayEnd(later, RUN, MAX_TICKS_PER_REPLY - 1, 0, last + 5)  # one short of full
    settle(rig.source, short, rig.tracker, rig.now_s)
    assert rig.source.pending == {}
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (2, 103)


def test_a_run_that_is_over_loses_its_gap(link, caplog):
    rig = link(filled_buffer(0, 9))
    rig.buffer.sampler_id = "run-2"  # the sampler restarted: another run answers
    rig.see(0, 5)
    rig.tracker.observe(RUN, HOST, 3)  # 1-2 and 4 still missing
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        rig.round()
    assert rig.tracker.outstanding(RUN, 0, 5) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (2, 3)
    assert caplog.messages == [
        f"gap of {n} tick(s) from host h1 (run run-1, seq {seqs}) cannot be filled: "
        "that sampler run is over"
        for n, seqs in ((2, "1-2"), (1, "4-4"))
    ]


def test_an_empty_buffer_loses_the_gap(link):
    rig = link(ReplayBuffer(RUN, 10))
    rig.see(0, 3)
    rig.round()
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 2)
    assert rig.source.pending == {}


def test_answers_out_of_order_and_twice_settle_each_gap_once(link):
    rig = link(filled_buffer(0, 10))
    rig.see(0, 3, 4, 8)  # asks 1-2, then 5-7
    assert rig.serve() == 2
    messages = rig.replies(2)
    ends = [i for i, m in enumerate(messages) if parse_end(m) is not None]
    first_reply, second_reply = messages[: ends[0] + 1], messages[ends[0] + 1 :]
    rig.take(second_reply)
    assert rig.tracker.outstanding(RUN, 0, 10) == [(1, 2)]
    assert list(rig.source.pending) == [(RUN, 1)]
    rig.take(first_reply)
    rig.take(messages)  # the same answers again: nothing changes, nothing is lost
    assert rig.tracker.outstanding(RUN, 0, 10) == []
    assert rig.source.pending == {}
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (0, 0)


def test_an_end_that_comes_before_its_ticks_gives_them_up_and_the_ticks_still_count(link):
    rig = link(filled_buffer(0, 5))
    rig.see(0, 5)  # 1-4
    rig.serve()
    messages = rig.replies(1)
    rig.take(messages[-1:])  # the end first: it says 4 were sent, none arrived
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 4)
    rig.take(messages[:-1])  # late ticks are still stored, not counted twice
    assert rig.tracker.outstanding(RUN, 0, 5) == []
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 4)


# -- overdue retries ---------------------------------------------------------------------------


def test_an_unanswered_request_is_asked_again_and_given_up_after_the_last_attempt(link, caplog):
    rig = link(filled_buffer(0, 5))
    rig.see(0, 5)
    assert rig.serve() == 1  # asked, never answered
    assert retry_overdue(rig.source, rig.tracker, rig.now_s) == rig.now_s + REPLAY_TIMEOUT_S
    assert retry_overdue(rig.source, rig.tracker, rig.now_s + REPLAY_TIMEOUT_S - 0.01) == (
        rig.now_s + REPLAY_TIMEOUT_S
    )
    assert rig.router.poll(0) == 0  # not yet due: nothing sent again
    for attempt in range(2, REPLAY_ATTEMPTS + 1):
        rig.now_s += REPLAY_TIMEOUT_S
        assert retry_overdue(rig.source, rig.tracker, rig.now_s) == rig.now_s + REPLAY_TIMEOUT_S
        assert rig.serve() == 1, attempt
        assert rig.source.pending[RUN, 1].attempts == attempt
    rig.now_s += REPLAY_TIMEOUT_S
    with caplog.at_level(logging.WARNING, logger="services.writer.sequences"):
        assert retry_overdue(rig.source, rig.tracker, rig.now_s) is None
    assert rig.source.pending == {}
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 4)
    assert "no answer from tcp://sampler:5556" in caplog.text
    assert rig.asked == [(1, 4)] * REPLAY_ATTEMPTS


def test_giving_up_one_request_does_not_stop_the_others(link):
    rig = link(filled_buffer(0, 9))
    rig.see(0, 2)  # asks 1-1
    rig.now_s += REPLAY_TIMEOUT_S * REPLAY_ATTEMPTS
    rig.see(4)  # asks 3-3, much later
    rig.source.pending[RUN, 1].attempts = REPLAY_ATTEMPTS
    due = retry_overdue(rig.source, rig.tracker, rig.now_s)
    assert list(rig.source.pending) == [(RUN, 3)]
    assert due == rig.now_s + REPLAY_TIMEOUT_S
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (1, 1)


def test_a_request_filled_meanwhile_is_forgotten_without_asking_again(link):
    rig = link(filled_buffer(0, 9))
    rig.see(0, 3, 5, 9)  # asks 1-2, 4-4 and 6-8
    assert rig.serve() == 3
    rig.see(4)  # arrives late on the live socket
    first_due = retry_overdue(rig.source, rig.tracker, rig.now_s + 1)
    assert first_due == rig.now_s + REPLAY_TIMEOUT_S
    assert set(rig.source.pending) == {(RUN, 1), (RUN, 6)}
    rig.source.pending[RUN, 6].sent_at += 2  # asked later: due later
    assert retry_overdue(rig.source, rig.tracker, rig.now_s + 1) == rig.now_s + REPLAY_TIMEOUT_S
    rig.see(1, 2)
    assert retry_overdue(rig.source, rig.tracker, rig.now_s + 1) == (
        rig.now_s + 2 + REPLAY_TIMEOUT_S
    )
    assert rig.router.poll(0) == 0
    assert (rig.tracker.gaps, rig.tracker.lost_ticks) == (0, 0)


# -- the decoders face the network: fuzzed as the tick codec is --------------------------------


def test_request_and_end_survive_the_round_trip():
    request = ReplayRequest("r" * 64, 0, 2**63)
    assert decode_request(request.to_frames()) == request
    assert request.to_frames()[0] == REQUEST_TOPIC == b"pcw.replay?"
    end = ReplayEnd(request, "other", 5, None, None)
    assert decode_end(end.to_frames()) == end
    assert end.to_frames()[0] == END_TOPIC == b"pcw.replay."
    assert decode_end(ReplayEnd(request, "r", 0, 3, 9).to_frames()).held_to_seq == 9


def payload(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [REQUEST_TOPIC],
        [REQUEST_TOPIC, payload({"sampler_id": "a", "from_seq": 0, "to_seq": 1}), b""],
        [END_TOPIC, payload({"sampler_id": "a", "from_seq": 0, "to_seq": 1})],
        [b"pcw.tick", payload({"sampler_id": "a", "from_seq": 0, "to_seq": 1})],
        [REQUEST_TOPIC, b""],
        [REQUEST_TOPIC, b"\xc1"],
        [REQUEST_TOPIC, payload({"sampler_id": "a", "from_seq": -1, "to_seq": 1})],
        [REQUEST_TOPIC, payload({"sampler_id": "", "from_seq": 0, "to_seq": 1})],
        [REQUEST_TOPIC, payload({"sampler_id": "a" * 65, "from_seq": 0, "to_seq": 1})],
        [REQUEST_TOPIC, payload({"sampler_id": "a", "from_seq": 0})],
        [REQUEST_TOPIC, payload({"sampler_id": "a", "from_seq": 0, "to_seq": 1, "x": 1})],
        [REQUEST_TOPIC, payload({"sampler_id": "a", "from_seq": "0", "to_seq": 1})],
        [REQUEST_TOPIC, payload(["a", 0, 1])],
        [REQUEST_TOPIC, payload({"sampler_id": "a", "from_seq": 0, "to_seq": 1}) + b"\x00"],
    ],
)
def test_a_malformed_request_is_refused(frames):
    with pytest.raises(ReplayError):
        decode_request(frames)


def test_a_request_with_a_key_that_is_not_utf8_is_ignored_not_raised():
    frames = [REQUEST_TOPIC, b"\x81\xa5\x00\x00\x00\x00\x80"]  # {"\0\0\0\0\x80": ...}
    with pytest.raises(ReplayError):
        decode_request(frames)
    with pytest.raises(ReplayError):
        decode_end([END_TOPIC, frames[1]])
    buffer = filled_buffer(0, 3)
    assert buffer.answer(frames) == []  # the sampler goes on serving
    assert buffer.bad_requests == 1


def test_a_malformed_end_is_refused():
    request = ReplayRequest("a", 0, 1)
    good = msgspec.to_builtins(ReplayEnd(request, "a", 1, 0, 1))
    for change in ({"sent": -1}, {"held_from_seq": -3}, {"sampler_id": ""}, {"extra": 1}):
        with pytest.raises(ReplayError):
            decode_end([END_TOPIC, payload({**good, **change})])
    with pytest.raises(ReplayError):
        decode_end([REQUEST_TOPIC, payload(good)])
    with pytest.raises(ReplayError, match="not a"):
        decode_end([END_TOPIC])
    with pytest.raises(ReplayError, match="bad replay payload"):
        decode_end([END_TOPIC, b"\x93"])


def decodes_or_rejects(frames: list[bytes]) -> None:
    """Assert that both decoders give a valid message or raise ReplayError, and nothing else."""
    for decode in (decode_request, decode_end):
        try:
            message = decode(frames)
        except ReplayError as error:
            assert str(error)
            continue
        assert decode(message.to_frames()) == message
        request = message if isinstance(message, ReplayRequest) else message.request
        assert 1 <= len(request.sampler_id) <= 64
        assert request.from_seq >= 0 and request.to_seq >= 0


VALID_REQUEST = ReplayRequest("run-1", 5, 2005).to_frames()[1]
VALID_END = ReplayEnd(ReplayRequest("run-1", 5, 2005), "run-1", 2000, 0, 9000).to_frames()[1]


MUTATIONS = st.lists(
    st.tuples(
        st.sampled_from(["flip", "insert", "delete", "set"]),
        st.integers(0, 256),
        st.integers(0, 255),
    ),
    min_size=1,
    max_size=8,
)


@fuzz(0.5)
@given(topic=st.sampled_from([REQUEST_TOPIC, END_TOPIC]), data=st.binary(max_size=512))
def test_random_payload_bytes_only_ever_raise_replay_error(topic, data):
    decodes_or_rejects([topic, data])


@fuzz(0.5)
@given(
    topic=st.sampled_from([REQUEST_TOPIC, END_TOPIC]),
    valid=st.sampled_from([VALID_REQUEST, VALID_END]),
    mutations=MUTATIONS,
)
def test_mutated_valid_encodings_only_ever_raise_replay_error(topic, valid, mutations):
    decodes_or_rejects([topic, mutate(valid, mutations)])


LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats()
    | st.text(max_size=70)
    | st.binary(max_size=8)
)
REQUEST_FIELDS = ["sampler_id", "from_seq", "to_seq"]
WRONG_REQUESTS = st.fixed_dictionaries({}, optional={name: LEAVES for name in REQUEST_FIELDS})
WRONG_ENDS = st.fixed_dictionaries(
    {},
    optional={
        "request": WRONG_REQUESTS | LEAVES,
        **{name: LEAVES for name in ("sampler_id", "sent", "held_from_seq", "held_to_seq")},
    },
)


@fuzz(0.25)
@given(
    topic=st.sampled_from([REQUEST_TOPIC, END_TOPIC]),
    data=WRONG_REQUESTS | WRONG_ENDS | st.lists(LEAVES, max_size=5) | LEAVES,
)
def test_well_formed_msgpack_of_the_wrong_shape_only_ever_raises_replay_error(topic, data):
    decodes_or_rejects([topic, payload(data)])


@fuzz(0.25)
@given(
    frames=st.lists(
        st.binary(max_size=32) | st.sampled_from([REQUEST_TOPIC, END_TOPIC, VALID_REQUEST]),
        max_size=4,
    )
)
def test_random_frame_lists_only_ever_raise_replay_error(frames):
    decodes_or_rejects(frames)


@fuzz(0.25)
@given(frames=st.lists(st.binary(max_size=64), max_size=4))
def test_the_buffer_answers_any_request_frames_without_raising(frames):
    buffer = filled_buffer(0, 3)
    replies = buffer.answer(frames)
    assert replies == [] or parse_end(replies[-1]) is not None
    assert buffer.requests + buffer.bad_requests == 1


def test_the_replay_endpoint_is_the_next_port_or_a_path_suffix():
    assert replay_endpoint("tcp://10.0.0.5:5555") == "tcp://10.0.0.5:5556"
    assert replay_endpoint("tcp://[::1]:65534") == "tcp://[::1]:65535"
    assert replay_endpoint("ipc:///run/pcw/ticks") == "ipc:///run/pcw/ticks.replay"
    with pytest.raises(ValueError, match=r"^a tcp endpoint needs a numeric port: tcp://h:p$"):
        replay_endpoint("tcp://h:p")
