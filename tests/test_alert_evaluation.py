"""Alert evaluation: each tick judged once, in order, across replays, failed writes and restarts.

The evaluator is fed as the writer feeds it (a batch of ticks and the runs' positions after it)
and stores through the writer's real Store into a real SQLite file, so that what a restart reads
back is what a restarted writer would read.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.config import load_config
from common.messages import GpuLimits, GpuReading, Tick
from services.alerts.evaluator import Evaluator
from services.writer.store import Store

T0 = 1_800_000_000.0
SLOWDOWN_C = 90


class Clock:
    def __init__(self, now_s: float = T0) -> None:
        self.now_s = now_s

    def __call__(self) -> float:
        return self.now_s


def config(**overrides: str):
    env = {
        "PCW_ALERT_TEMP_FOR_S": "3",
        "PCW_ALERT_KEEP_FIRING_S": "2",
        "PCW_ALERT_STALE_FOR_S": "5",
        "PCW_ALERT_WRITER_FOR_S": "2",
    }
    env.update(overrides)
    return load_config(env)


def reading(temp_c: int | None, error: str | None = None) -> GpuReading:
    return GpuReading(
        index=0,
        uuid="GPU-hot",
        name="NVIDIA H100 80GB HBM3",
        temp_c=temp_c,
        util_gpu_pct=90,
        error=error,
        limits=GpuLimits(temp_slowdown_c=SLOWDOWN_C),
    )


def tick(seq: int, temp_c: int | None, run: str = "run-a", error: str | None = None) -> Tick:
    return Tick(
        host="node-1",
        sampler_id=run,
        seq=seq,
        ts=T0 + seq,
        interval_s=1.0,
        gpus=[reading(temp_c, error)],
    )


HOT, COOL = SLOWDOWN_C - 2, SLOWDOWN_C - 20


def feed(evaluator: Evaluator, store: Store, ticks: list[Tick], position: int) -> None:
    """Store a batch as the writer does: readings, positions and the evaluation together."""
    positions = {ticks[0].sampler_id: ("node-1", position)}
    outcome = evaluator.evaluate(ticks, positions)
    store.write(ticks, positions, outcome)
    evaluator.committed()


def transitions(db_path: Path) -> list[tuple[str, str, float]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT rule, state, ts FROM alert_events ORDER BY ts, state"
        ).fetchall()


def notifications(db_path: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db_path) as conn:
        return conn.execute(
            "SELECT kind, rule FROM notifications ORDER BY notification_id"
        ).fetchall()


@pytest.fixture
def store(tmp_path: Path):
    made = Store(tmp_path / "gpu_stats.db")
    made.open()
    yield made
    made.close()


def loaded(store: Store, clock: Clock | None = None, **overrides: str) -> Evaluator:
    evaluator = Evaluator(config(**overrides), (), clock=clock or Clock())
    states, hosts = store.alert_state()
    cursors = {run: seq for run, (_host, seq) in store.positions().items()}
    evaluator.load(states, cursors, hosts)
    return evaluator


def test_a_hot_gpu_fires_after_its_time_and_resolves_after_keep_firing(store):
    evaluator = loaded(store)
    temps = [COOL, HOT, HOT, HOT, HOT, COOL, COOL, COOL, COOL]
    for seq, temp_c in enumerate(temps):
        feed(evaluator, store, [tick(seq, temp_c)], seq)

    # hot from seq 1; 3 s later (seq 4) it fires; clear from seq 5, resolved 2 s later (seq 7)
    assert transitions(store.db_path) == [
        ("temperature", "firing", T0 + 4),
        ("temperature", "resolved", T0 + 7),
    ]
    assert notifications(store.db_path) == [("firing", "temperature"), ("resolved", "temperature")]


def test_ticks_after_a_gap_wait_for_the_replay_and_are_judged_in_order(store):
    evaluator = loaded(store)
    feed(evaluator, store, [tick(0, COOL)], 0)
    # seq 5 arrives live first: the run's position stays at 0 while 1-4 are missing
    feed(evaluator, store, [tick(5, COOL)], 0)
    assert transitions(store.db_path) == []
    # the replay brings 1-4, hot: judged before 5, so the hot spell is seen as it happened
    feed(evaluator, store, [tick(seq, HOT) for seq in (1, 2, 3, 4)], 5)

    assert transitions(store.db_path) == [("temperature", "firing", T0 + 4)]


def test_a_tick_delivered_again_is_not_judged_again(store):
    evaluator = loaded(store)
    for seq in range(6):
        feed(evaluator, store, [tick(seq, HOT)], seq)
    before = notifications(store.db_path)

    feed(evaluator, store, [tick(seq, HOT) for seq in range(6)], 5)  # a replay overlapping

    assert notifications(store.db_path) == before == [("firing", "temperature")]


def test_a_failed_write_loses_no_transition(store, tmp_path):
    evaluator = loaded(store)
    for seq in range(4):
        feed(evaluator, store, [tick(seq, HOT)], seq)
    batch = [tick(4, HOT)]
    evaluator.evaluate(batch, {"run-a": ("node-1", 4)})
    evaluator.failed()  # the write failed: the writer keeps the batch and tries again
    feed(evaluator, store, batch, 4)

    assert transitions(store.db_path) == [("temperature", "firing", T0 + 3)]


def test_a_restarted_writer_goes_on_from_the_file_without_repeating_or_missing(store):
    first = loaded(store)
    for seq in range(3):
        feed(first, store, [tick(seq, HOT)], seq)
    # the writer is killed here; a new one reads the states and positions back
    second = loaded(store)
    for seq in range(6):  # the sampler's replay overlaps what was stored
        feed(second, store, [tick(seq, HOT)], max(seq, 2))

    assert transitions(store.db_path) == [("temperature", "firing", T0 + 3)]
    assert notifications(store.db_path) == [("firing", "temperature")]


def test_ticks_held_past_a_gap_when_the_writer_dies_are_judged_after_its_restart(store):
    first = loaded(store)
    feed(first, store, [tick(0, COOL)], 0)
    feed(first, store, [tick(seq, HOT) for seq in (3, 4, 5)], 0)  # 1-2 missing: held
    # killed: 3-5 are stored but not judged; the position (0) makes the new writer ask from 1
    second = loaded(store)
    feed(second, store, [tick(seq, HOT) for seq in (1, 2, 3, 4, 5)], 5)

    assert transitions(store.db_path) == [("temperature", "firing", T0 + 4)]


def test_a_gpu_in_error_fires_and_resolves_when_it_reads_again(store):
    evaluator = loaded(store)
    feed(evaluator, store, [tick(0, COOL, error="GPU is lost")], 0)
    for seq in range(1, 5):
        feed(evaluator, store, [tick(seq, COOL)], seq)

    assert [(rule, state) for rule, state, _ in transitions(store.db_path)] == [
        ("gpu_error", "firing"),
        ("gpu_error", "resolved"),
    ]


def test_a_null_temperature_restarts_a_pending_wait(store):
    evaluator = loaded(store)
    for seq, temp_c in enumerate([HOT, HOT, None, HOT, HOT, HOT]):
        feed(evaluator, store, [tick(seq, temp_c)], seq)

    assert transitions(store.db_path) == []  # hot 0-1, unknown at 2, hot again only 2 s by 5


def test_a_silent_host_fires_after_stale_and_its_time_and_resolves_with_its_next_tick(store):
    clock = Clock()
    evaluator = loaded(store, clock)
    feed(evaluator, store, [tick(0, COOL)], 0)
    # stale after 3 x 1 s + 10 s; fires PCW_ALERT_STALE_FOR_S (5 s) later
    for step_s in range(0, 20):
        clock.now_s = T0 + step_s
        outcome = evaluator.check_time(degraded=None)
        store.write_alerts(outcome)
        evaluator.committed()
    assert [(r, s) for r, s, _ in transitions(store.db_path)] == [("host_stale", "firing")]
    assert transitions(store.db_path)[0][2] == pytest.approx(T0 + 18, abs=1.01)

    feed(evaluator, store, [tick(1, COOL)], 1)

    assert [(r, s) for r, s, _ in transitions(store.db_path)] == [
        ("host_stale", "firing"),
        ("host_stale", "resolved"),
    ]


def test_a_degraded_writer_is_told_from_memory_and_stored_once_the_file_works(store):
    clock = Clock()
    evaluator = loaded(store, clock)
    for step_s in range(4):
        clock.now_s = T0 + step_s
        outcome = evaluator.check_time(degraded="disk is full")
        if outcome.notifications:
            direct = [n.alert.rule for n in outcome.notifications]
        evaluator.failed(keep_unsaved=frozenset({"writer_degraded"}))  # the file fails too
    assert direct == ["writer_degraded"]
    assert transitions(store.db_path) == []

    clock.now_s = T0 + 10
    outcome = evaluator.check_time(degraded=None)  # the file works again
    store.write_alerts(outcome)
    evaluator.committed()

    assert [(r, s) for r, s, _ in transitions(store.db_path)] == [
        ("writer_degraded", "firing"),
        ("writer_degraded", "resolved"),
    ]
    # its firing message went from memory; only the resolution is in the outbox
    assert notifications(store.db_path) == [("resolved", "writer_degraded")]


def test_a_rule_turned_off_never_fires(store):
    evaluator = loaded(store, PCW_ALERTS_OFF="temperature")
    for seq in range(8):
        feed(evaluator, store, [tick(seq, HOT)], seq)

    assert transitions(store.db_path) == []


def test_the_alerts_of_a_gpu_its_host_no_longer_reports_resolve(store):
    evaluator = loaded(store)
    feed(evaluator, store, [tick(0, COOL, error="GPU is lost")], 0)
    replaced = Tick(host="node-1", sampler_id="run-a", seq=1, ts=T0 + 1, interval_s=1.0, gpus=[])

    feed(evaluator, store, [replaced], 1)

    assert [(rule, state) for rule, state, _ in transitions(store.db_path)] == [
        ("gpu_error", "firing"),
        ("gpu_error", "resolved"),
    ]
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM alert_states").fetchone() == (0,)


def test_an_alert_that_keeps_firing_is_told_again_every_repeat_interval(store):
    evaluator = loaded(store, PCW_ALERT_REPEAT_S="60")
    for seq in range(0, 130):
        feed(evaluator, store, [tick(seq, HOT)], seq)

    # fired at 3 s; told again at 63 s and 123 s
    assert notifications(store.db_path) == [
        ("firing", "temperature"),
        ("repeat", "temperature"),
        ("repeat", "temperature"),
    ]


def test_the_hourly_purge_takes_alert_history_older_than_the_retention(store):
    evaluator = loaded(store)
    for seq, temp_c in enumerate([HOT] * 5 + [COOL] * 4):
        feed(evaluator, store, [tick(seq, temp_c)], seq)
    assert len(transitions(store.db_path)) == 2

    store.purge(T0 + 5)  # the firing at +3 goes, the resolution at +7 stays

    assert transitions(store.db_path) == [("temperature", "resolved", T0 + 7)]


def test_a_host_that_sends_is_not_stale_while_the_file_fails(store):
    clock = Clock()
    evaluator = loaded(store, clock)
    feed(evaluator, store, [tick(0, COOL)], 0)
    for seq in range(1, 40):  # every write fails: the writer keeps the ticks, the host sends
        clock.now_s = T0 + seq
        evaluator.evaluate([tick(seq, COOL)], {"run-a": ("node-1", seq)})
        evaluator.failed()
        evaluator.check_time(degraded=None)
        evaluator.failed()

    assert [s.rule for s in evaluator.engine.states.values()] == []


def test_a_tick_held_past_a_gap_of_a_run_that_ended_is_judged(store):
    evaluator = loaded(store)
    feed(evaluator, store, [tick(0, COOL, error=None)], 0)
    lost = Tick(
        host="node-1",
        sampler_id="run-a",
        seq=5,
        ts=T0 + 5,
        interval_s=1.0,
        gpus=[reading(COOL, error="GPU has fallen off the bus")],
    )
    feed(evaluator, store, [lost], 0)  # 1-4 missing: held
    assert transitions(store.db_path) == []

    # the sampler restarted (a new run): nothing will fill the gap of run-a
    outcome = evaluator.evaluate([], {}, live_runs={"run-b"})
    store.write_alerts(outcome)
    evaluator.committed()

    assert [(r, s) for r, s, _ in transitions(store.db_path)] == [("gpu_error", "firing")]
    assert evaluator.held == {}


def test_an_alert_of_a_rule_turned_off_resolves_at_the_next_start(store):
    first = loaded(store)
    for seq in range(5):
        feed(first, store, [tick(seq, HOT)], seq)
    assert [s for _, s, _ in transitions(store.db_path)] == ["firing"]

    second = loaded(store, Clock(T0 + 10), PCW_ALERTS_OFF="temperature")  # restarted, rule off
    feed(second, store, [tick(5, HOT)], 5)

    assert [(r, s) for r, s, _ in transitions(store.db_path)] == [
        ("temperature", "firing"),
        ("temperature", "resolved"),
    ]
    with sqlite3.connect(store.db_path) as conn:
        assert conn.execute("SELECT count(*) FROM alert_states").fetchone() == (0,)


def user_rules(text: str):
    from services.alerts.rule_file import parse_rules

    return parse_rules(text, "rules.toml")


def test_a_user_rule_firing_between_its_values_is_told_again_and_resolves_past_clear(store):
    rules = user_rules(
        '[[rule]]\nname = "warm"\nmetric = "temp_c"\nop = ">"\nthreshold = 80\nclear = 70\n'
    )
    evaluator = Evaluator(config(PCW_ALERT_REPEAT_S="60", PCW_ALERTS_OFF="temperature"), rules)
    evaluator.load([], {}, {})
    temps = [85] + [75] * 70 + [65] * 5  # fires, hovers between clear and threshold, cools
    for seq, temp_c in enumerate(temps):
        feed(evaluator, store, [tick(seq, temp_c)], seq)

    assert notifications(store.db_path) == [
        ("firing", "warm"),
        ("repeat", "warm"),
        ("resolved", "warm"),
    ]


def test_a_gpu_a_user_rule_no_longer_watches_resolves(store):
    watching = user_rules(
        '[[rule]]\nname = "warm"\nmetric = "temp_c"\nop = ">"\nthreshold = 80\ngpus = ["0"]\n'
    )
    evaluator = Evaluator(config(PCW_ALERTS_OFF="temperature"), watching)
    evaluator.load([], {}, {})
    feed(evaluator, store, [tick(0, 85)], 0)
    narrowed = user_rules(
        '[[rule]]\nname = "warm"\nmetric = "temp_c"\nop = ">"\nthreshold = 80\ngpus = ["7"]\n'
    )
    restarted = Evaluator(config(PCW_ALERTS_OFF="temperature"), narrowed)
    states, hosts = store.alert_state()
    restarted.load(states, {"run-a": 0}, hosts)
    for seq in range(1, 5):
        feed(restarted, store, [tick(seq, 85)], seq)

    assert [(r, s) for r, s, _ in transitions(store.db_path)] == [
        ("warm", "firing"),
        ("warm", "resolved"),
    ]
