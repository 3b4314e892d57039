"""Judge every tick exactly once, in each sampler run's order, and the hosts and writer by time.

Exactly once, across restarts of any process: the writer stores, with each batch, each sampler
run's *position* (the highest sequence number with nothing missing below it) and, in the same
transaction, the evaluation of the ticks up to it. A tick is evaluated when the position passes
it: a tick that came ahead of a gap waits (held here) until the replay fills the gap or the gap
is given up, so that the rules see each run's ticks in order. A tick at or below the stored
position was judged before: skipped. After a writer restart the ticks past the position, held
then, are asked again by the replay, and judged then. A failed write leaves the evaluator as it
was (evaluate() changes nothing until committed()).

Host and writer alerts are judged by time (check_time), each time the writer looks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field

from common.config import Config
from common.health import xid_text
from common.messages import GpuReading, Tick
from common.staleness import is_stale, stale_after_s
from services.alerts.engine import AlertState, Engine, Observation, Outcome, Subject
from services.alerts.rule_file import UserRule
from services.alerts.rules import (
    GPU_ERROR,
    HOST_STALE,
    WRITER_DEGRADED,
    XID,
    GpuRule,
    check_error,
    gpu_rules,
    gpu_subject,
    gpu_subject_key,
    rule_specs,
    where,
)

log = logging.getLogger(__name__)

MAX_HELD_TICKS = 4096  # per run; past it the oldest is judged out of order (logged)
WRITER_SUBJECT = Subject("writer")


@dataclass
class Pending:
    """What an evaluation moves once its transaction commits."""

    outcome: Outcome = field(default_factory=Outcome)
    cursors: dict[str, int] = field(default_factory=dict)
    held: dict[str, dict[int, Tick]] = field(default_factory=dict)
    seen_hosts: dict[str, float] = field(default_factory=dict)
    carried: Outcome = field(default_factory=Outcome)  # the unsaved outcome it carries
    timed: bool = False  # judged by time (hosts, writer), not by ticks


def _eventful(reading: GpuReading) -> bool:
    """Return whether a reading is in error or reports XID events (always judged)."""
    return reading.error is not None or bool(reading.xid_events)


_NONE: frozenset[str] = frozenset()


def _seen_later(rule: GpuRule, host: str, reading: GpuReading) -> Callable[[], Observation]:
    """Return how to see a reading that rule.active picked (so its check answers)."""

    def seen() -> Observation:
        observation = rule.check(host, reading)
        assert observation is not None and observation.active, rule.name
        return observation

    return seen


class Evaluator:
    """The alert engine fed by the writer's batches."""

    def __init__(
        self,
        config: Config,
        user_rules: tuple[UserRule, ...],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.specs = rule_specs(config, user_rules)
        self.engine = Engine(self.specs, config.alert_repeat_s, (), clock)
        self.rules = gpu_rules(config, user_rules)
        self._names = frozenset({GPU_ERROR, XID, *(rule.name for rule in self.rules)})
        self.shortcuts = True  # off: every rule judged on every reading (the tests' reference)
        self.cursors: dict[str, int] = {}
        self.held: dict[str, dict[int, Tick]] = {}
        self.clock = clock
        self.hosts: dict[str, float] = {}  # host -> its sampling interval (s)
        self.last_seen_s: dict[str, float] = {}
        self.loaded = False
        self._pending: Pending | None = None
        # what was judged by time while the file could not be written: stored with the next write
        self._unsaved = Outcome()
        self.out_of_order = 0

    def load(
        self, states: Iterable[AlertState], cursors: dict[str, int], hosts: dict[str, float]
    ) -> None:
        """Start from what the file holds: the alerts' states, the runs' positions, the hosts.

        A host the file knows is judged from now: it has its grace anew after a restart.
        """
        stored = list(states)
        keys = {state.key for state in stored}
        timed = [  # judged by time while the file could not be read: kept
            state
            for state in self.engine.states.values()
            if state.rule in (HOST_STALE, WRITER_DEGRADED) and state.key not in keys
        ]
        self.engine.replace_states(stored + timed)
        self._unsaved.merge(self.engine.forget_rules_not_in(self.specs, self.clock()))
        # read again after a purge: the ticks held past a gap stay, the cursors are the same
        for run, seq in cursors.items():
            self.cursors[run] = max(seq, self.cursors.get(run, -1))
        now_s = self.clock()
        self.hosts = {**hosts, **{h: i for h, i in self.hosts.items() if h in hosts}}
        self.last_seen_s = {host: self.last_seen_s.get(host, now_s) for host in self.hosts}
        self.loaded = True

    def _start(self, timed: bool) -> Pending:
        unsaved, self._unsaved = self._unsaved, Outcome()
        outcome = Outcome(
            dict(unsaved.states), list(unsaved.transitions), list(unsaved.notifications)
        )
        return Pending(outcome, dict(self.cursors), self.held, carried=unsaved, timed=timed)

    # -- ticks -------------------------------------------------------------------------------

    def evaluate(
        self,
        ticks: list[Tick],
        positions: dict[str, tuple[str, int]],
        live_runs: set[str] | None = None,
    ) -> Outcome:
        """Judge the ticks of this batch (and those held) that the new positions pass.

        live_runs: the runs the writer still follows, where known; a held tick of another run
        (its sampler restarted, its gap given up) is judged now, as nothing will fill its gap.
        """
        pending = self._start(timed=False)
        pending.held = {run: dict(held) for run, held in self.held.items()}
        now_s = self.clock()
        for tick in ticks:  # a host that sends is not stale, whether or not its ticks are stored
            self.hosts[tick.host] = tick.interval_s
            self.last_seen_s[tick.host] = now_s
        for tick in ticks:
            cursor = pending.cursors.get(tick.sampler_id, -1)
            if tick.seq > cursor:
                pending.held.setdefault(tick.sampler_id, {})[tick.seq] = tick
            pending.seen_hosts[tick.host] = tick.interval_s
        live = self._live_gpus(pending.outcome)
        for run, held in pending.held.items():
            position = positions.get(run, (None, None))[1]
            if live_runs is not None and run not in live_runs:
                position = max(held)
            due = sorted(seq for seq in held if position is not None and seq <= position)
            if len(held) - len(due) > MAX_HELD_TICKS:
                overflow = sorted(set(held) - set(due))[: len(held) - len(due) - MAX_HELD_TICKS]
                due = sorted(due + overflow)
                self.out_of_order += len(overflow)
                log.warning(
                    "judging %d ticks of run %s before a gap is settled", len(overflow), run
                )
            for seq in due:
                self._judge(pending.outcome, held.pop(seq), live)
            if due:
                pending.cursors[run] = max(pending.cursors.get(run, -1), due[-1])
        self.engine.apply_held(pending.outcome)
        for host in pending.seen_hosts:
            seen = Observation(Subject(host, host=host), False, True, None, f"{host} is back")
            if HOST_STALE in self.specs:
                self.engine.observe(pending.outcome, HOST_STALE, seen, self.clock())
        pending.held = {run: held for run, held in pending.held.items() if held}
        self._pending = pending
        return pending.outcome

    def committed(self) -> None:
        """Take the evaluation just stored as done."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        self.engine.apply(pending.outcome)
        self.cursors, self.held = pending.cursors, pending.held

    def failed(self, keep_unsaved: frozenset[str] = frozenset()) -> None:
        """Forget the evaluation that could not be stored; it is made again with the readings.

        What was judged by time cannot be made again: its states are kept in memory and it is
        stored with the next write that succeeds, less the notifications of keep_unsaved's
        rules, which the caller sends from memory.
        """
        pending, self._pending = self._pending, None
        if pending is None:
            return
        if not pending.timed:
            self._unsaved = pending.carried  # the ticks' part is judged again with them
            return
        outcome = pending.outcome
        self._unsaved = Outcome(
            dict(outcome.states),
            list(outcome.transitions),
            [n for n in outcome.notifications if n.alert.rule not in keep_unsaved],
        )
        self.engine.apply(outcome)

    def _live_gpus(self, outcome: Outcome) -> dict[str, dict[str, set[str]]]:
        """Return {host: {GPU UUID: the rules with an alert of it}}, pending or firing, in the
        engine or the outcome so far (a superset is fine: it only costs judging a rule that
        changes nothing)."""
        live: dict[str, dict[str, set[str]]] = {}
        for state in (*self.engine.states.values(), *outcome.states.values()):
            if state is None:
                continue
            subject = state.subject
            if subject.host is not None and subject.gpu_uuid is not None:
                host_gpus = live.setdefault(subject.host, {})
                host_gpus.setdefault(subject.gpu_uuid, set()).add(state.rule)
        return live

    def _judge(self, outcome: Outcome, tick: Tick, live: dict[str, dict[str, set[str]]]) -> None:
        """Judge one tick's readings; live: as _live_gpus(outcome), kept up to date here.

        An observation that is not active, of an alert that has no state, changes nothing
        (Engine.observe, unknown and quiet leave it be): a rule is judged on a reading only
        where it finds the reading active (one pass per rule over the tick's readings, with
        no Observation built) or its alert of that GPU has a state. A steady tick of GPUs
        with no alert builds no Observation and no message at all. With shortcuts off, every
        rule is judged on every reading (the tests' reference).
        """
        readings = tick.gpus
        live_here = live.setdefault(tick.host, {})
        if tick.error is None and (live_here or not self.shortcuts):
            present = {reading.uuid for reading in readings}
            self.engine.gone(outcome, tick.host, present, tick.ts)
        if not self.shortcuts:
            for reading in readings:
                self._judge_reading(outcome, tick, reading, self._names, set(self._names))
            return
        judged: dict[int, set[str]] = {}  # place of a reading -> the rules it is active in
        for rule in self.rules:
            for place in rule.active(tick.host, readings):
                judged.setdefault(place, set()).add(rule.name)
        if not judged and not live_here and not any(map(_eventful, readings)):
            return  # the common case: nothing to judge in this tick
        for place, reading in enumerate(readings):
            active = judged.get(place)
            alerted = live_here.get(reading.uuid)
            # (in error, or reporting XIDs: judged whatever the rules find)
            if active is not None or alerted is not None or _eventful(reading):
                if alerted is None:
                    alerted = live_here[reading.uuid] = set()
                self._judge_reading(outcome, tick, reading, active or _NONE, alerted)

    def _judge_reading(
        self,
        outcome: Outcome,
        tick: Tick,
        reading: GpuReading,
        active: AbstractSet[str],
        alerted: set[str],
    ) -> None:
        """Judge one reading by the rules that find it active (active) and those that may have
        an alert of this GPU (alerted, to which the rules judged here are added): the others
        would change nothing. As the alerts' state machines say."""
        engine = self.engine
        subject_key = gpu_subject_key(tick.host, reading)
        if GPU_ERROR in self.specs and (reading.error is not None or GPU_ERROR in alerted):
            alerted.add(GPU_ERROR)
            engine.observe(outcome, GPU_ERROR, check_error(tick.host, reading), tick.ts)
        if XID in self.specs and (reading.xid_events or XID in alerted):
            alerted.add(XID)
            subject = gpu_subject(tick.host, reading)
            seen_keys = set()
            for xid in reading.xid_events:
                xid_subject = Subject(
                    f"{subject.key}/xid{xid.code}",
                    tick.host,
                    reading.uuid,
                    reading.index,
                    reading.name,
                )
                seen_keys.add(xid_subject.key)
                text = f"{where(tick.host, reading)} reported {xid_text(xid.code)}"
                engine.observe(
                    outcome, XID, Observation(xid_subject, True, False, xid.code, text), tick.ts
                )
            engine.quiet(outcome, XID, subject.key + "/", tick.ts, frozenset(seen_keys))
        for rule in self.rules:
            if rule.name not in active and rule.name not in alerted:
                continue
            if (
                self.shortcuts
                and rule.name in active
                and reading.error is None
                and engine.hold_active(
                    outcome, rule.name, subject_key, tick.ts, _seen_later(rule, tick.host, reading)
                )
            ):
                continue  # it only moved its alert's newest reading; its text is made later
            seen = None if reading.error is not None else rule.check(tick.host, reading)
            if seen is None:
                engine.unknown(outcome, rule.name, subject_key)
            else:
                alerted.add(rule.name)
                engine.observe(outcome, rule.name, seen, tick.ts)

    # -- time --------------------------------------------------------------------------------

    def check_time(self, degraded: str | None) -> Outcome:
        """Judge the hosts' staleness and the writer's state now (degraded: why, or None)."""
        pending = self._start(timed=True)
        now_s = self.clock()
        if HOST_STALE in self.specs:
            for host, interval_s in self.hosts.items():
                last_s = self.last_seen_s.get(host)
                if last_s is None or not is_stale(last_s, interval_s, now_s):
                    continue
                silent_s = now_s - last_s
                text = (
                    f"host {host} has sent nothing for {silent_s:.0f} s"
                    f" (stale after {stale_after_s(interval_s):.0f} s)"
                )
                seen = Observation(Subject(host, host=host), True, False, silent_s, text)
                self.engine.observe(pending.outcome, HOST_STALE, seen, now_s)
        if WRITER_DEGRADED in self.specs:
            active = degraded is not None
            text = f"the writer is degraded: {degraded}" if active else "writer ok"
            seen = Observation(WRITER_SUBJECT, active, not active, None, text)
            self.engine.observe(pending.outcome, WRITER_DEGRADED, seen, now_s)
        self._pending = pending
        return pending.outcome
