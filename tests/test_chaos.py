"""Nothing lost: the writer and the web process killed at random while the stack runs."""

from __future__ import annotations

import itertools
import json
import os
import random
import signal
import time
import urllib.request

import pytest
import zmq

from common.messages import TOPIC
from common.status import read_status
from tests.stack import Stack, missing_and_duplicated, wait_until

INTERVAL_S = 0.5
SEED_VAR = "PCW_TEST_CHAOS_SEED"


def chaos_rng() -> random.Random:
    """Return the run's random source; print its seed, which SEED_VAR sets to replay a run."""
    seed = int(os.environ.get(SEED_VAR) or time.time_ns())
    print(f"chaos seed {seed}: {SEED_VAR}={seed} replays this run")
    return random.Random(seed)


def stored_span_s(stack: Stack) -> float:
    """Return the seconds between the first and the newest stored tick (0 before any)."""
    if stack.stored_ticks() == 0:
        return 0.0
    ((first_ts, last_ts),) = stack.query("SELECT min(ts), max(ts) FROM readings")
    return float(last_ts - first_ts)


def wait_published(endpoint: str, count: int, stack: Stack) -> None:
    """Wait until the sampler at endpoint has published count more ticks."""
    with zmq.Context() as context, context.socket(zmq.SUB) as sub:
        sub.setsockopt(zmq.LINGER, 0)
        sub.setsockopt(zmq.SUBSCRIBE, TOPIC)
        sub.connect(endpoint)
        seen = 0

        def one_more() -> bool:
            nonlocal seen
            while sub.poll(0):
                sub.recv_multipart()
                seen += 1
            return seen >= count

        wait_until(one_more, 60, f"{count} ticks published", stack)


def _kill_and_wait_restart(stack: Stack, name: str) -> None:
    pid = stack.pid_of(name)
    os.kill(pid, signal.SIGKILL)

    def restarted() -> bool:
        try:
            return stack.pid_of(name) != pid
        except LookupError:
            return False

    wait_until(restarted, 20, f"supervisord to restart {name}", stack)


def test_random_kills_lose_and_duplicate_nothing(tmp_path):
    rng = chaos_rng()
    env = {"PCW_SIM_GPUS": "2", "PCW_INTERVAL_S": str(INTERVAL_S)}
    with Stack(tmp_path, env) as stack:
        stack.wait_ticks(4)
        victims = ["writer", "writer", "writer", "web"]
        rng.shuffle(victims)
        for victim in victims:
            # 6 to 12 s of ticks stored, counted in ticks: the same run under any load
            stack.wait_ticks(stack.stored_ticks() + rng.randint(12, 24), timeout_s=120)
            _kill_and_wait_restart(stack, victim)
        wait_until(lambda: stored_span_s(stack) >= 62, 120, "62 s of stored ticks", stack)
        supervisord = stack.processes.pop("supervisord")
        supervisord.send_signal(signal.SIGTERM)
        assert supervisord.wait(60) == 0
        logs = stack.logs()

    expected, missing, duplicated = missing_and_duplicated(stack, INTERVAL_S)
    status = read_status(stack.db_path)
    print(
        f"chaos: {expected} ticks per GPU over {expected * INTERVAL_S:.1f} s, "
        f"kills {victims}, missing {missing}, duplicated {duplicated}, "
        f"replay gaps {status.replay_gaps if status else '?'}"
    )
    assert expected >= 60 / INTERVAL_S
    assert logs.count("asking tcp://") >= 3, "each writer restart should have asked for a replay"
    assert (missing, duplicated) == (0, 0), logs[-3000:]
    assert status is not None and status.lost_ticks == 0


@pytest.mark.parametrize("replay_ticks", [4])
def test_writer_down_longer_than_the_replay_buffer_reports_the_gap(tmp_path, replay_ticks):
    env = {
        "PCW_SIM_GPUS": "2",
        "PCW_INTERVAL_S": str(INTERVAL_S),
        "PCW_REPLAY_TICKS": str(replay_ticks),
    }
    with Stack(tmp_path, env, supervised=False, programs=("writer", "sampler")) as stack:
        stack.wait_ticks(4)
        assert stack.stop("writer", signal.SIGKILL) == -signal.SIGKILL
        wait_published(stack.env["PCW_PUB_ENDPOINT"], 12, stack)  # while no writer listens
        stack.start("writer")

        def gap_reported() -> bool:
            status = read_status(stack.db_path)
            return status is not None and status.replay_gaps == 1

        wait_until(gap_reported, 60, "the writer to report one replay gap", stack)
        stack.wait_ticks(stack.stored_ticks() + 3)
        stack.terminate()
        logs = stack.logs()

    status = read_status(stack.db_path)
    _expected, missing, duplicated = missing_and_duplicated(stack, INTERVAL_S)
    assert "cannot be filled: it has left the sampler's replay buffer" in logs
    assert status.lost_ticks >= 12 - replay_ticks  # the ticks that left the buffer
    # the readings lost are exactly the ticks given up, for each of the 2 GPUs: no invented points
    assert missing == 2 * status.lost_ticks
    assert duplicated == 0
    # the ticks the sampler still held were replayed: the newest stored tick before the restart
    # is followed by the buffer's ticks, not by a second gap
    stored = [ts for (ts,) in stack.query("SELECT DISTINCT ts FROM readings ORDER BY ts")]
    steps = [round((b - a) / INTERVAL_S) for a, b in itertools.pairwise(stored)]
    assert sum(1 for step in steps if step > 1) == 1, json.dumps(steps)


def test_a_sampler_restart_leaves_the_writer_and_web_running(tmp_path):
    env = {"PCW_SIM_GPUS": "2", "PCW_INTERVAL_S": str(INTERVAL_S)}
    with Stack(tmp_path, env, supervised=False) as stack:
        stack.wait_ticks(4)
        stack.wait_web()
        assert stack.stop("sampler") == 0
        stopped_at = stack.stored_ticks()
        time.sleep(2)
        stack.start("sampler")
        stack.wait_ticks(stopped_at + 6)
        runs = stack.query("SELECT sampler_id FROM positions")
        with urllib.request.urlopen(stack.web_url + "/api/v1/gpus", timeout=5) as response:
            gpus = json.loads(response.read())["gpus"]
        writer_alive = stack.processes["writer"].poll() is None
        web_alive = stack.processes["web"].poll() is None
        stack.terminate()
        logs = stack.logs()

    assert writer_alive and web_alive
    assert len(runs) == 2, "the writer stored ticks of both sampler runs"
    newest = max(gpu["latest"]["ts"] for gpu in gpus)
    assert newest >= stack.query("SELECT max(ts) FROM readings")[0][0] - 2 * INTERVAL_S
    assert "Traceback" not in logs
