"""Alert states from readings: pending -> firing -> resolved, with hysteresis and repeats (pure).

- An alert is one rule on one subject: a GPU (`host/UUID`), one XID code of a GPU, a host, or
  the writer. Its key is `rule|subject`.
- A rule looks at one reading and answers an Observation: active (its condition holds), cleared
  (once firing, the value is back past the rule's hysteresis), or nothing where the reading
  cannot tell (a null metric, a GPU in error): nothing restarts a pending alert's wait and
  leaves a firing one firing.
- Active for `for_s` (from the first active reading to the current one) moves pending to firing;
  a firing alert resolves once it has been cleared for `keep_firing_s` without a break, so that a
  value hovering at a threshold does not flap. An event rule (XID) fires on each event and
  resolves `keep_firing_s` after its last one.
- A firing alert is notified again every `repeat_s` while it fires.
- evaluate() never changes the engine: it returns an Outcome that the caller stores in the
  same transaction as the readings, and apply()s once that transaction has committed, so that a
  failed write leaves the engine as it was and the same readings are evaluated again.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace


@dataclass(frozen=True)
class Subject:
    """What an alert is about: its key part and the identity shown with it."""

    key: str
    host: str | None = None
    gpu_uuid: str | None = None
    gpu_index: int | None = None
    gpu_name: str | None = None


@dataclass(frozen=True)
class Observation:
    """What one rule sees in one reading (or one moment, for a host or the writer)."""

    subject: Subject
    active: bool
    cleared: bool
    value: float | None
    message: str


@dataclass(frozen=True)
class RuleSpec:
    """How an alert of a rule moves between states."""

    name: str
    severity: str
    for_s: float
    keep_firing_s: float
    event: bool = False  # fires on each event; resolves keep_firing_s after the last


@dataclass(frozen=True)
class AlertState:
    """An alert that is pending or firing (an inactive alert has no state)."""

    rule: str
    severity: str
    subject: Subject
    state: str  # "pending" | "firing"
    since_ts: float  # its condition holds since (pending) / held since (firing)
    last_ts: float  # the newest reading that saw it active
    value: float | None
    message: str
    fired_ts: float | None = None
    notified_ts: float | None = None
    cleared_since_ts: float | None = None  # firing, and cleared since then

    @property
    def key(self) -> str:
        """Return the alert's key, `rule|subject`."""
        return alert_key(self.rule, self.subject.key)


@dataclass(frozen=True)
class Transition:
    """An alert that started firing or resolved, at a reading's time."""

    state: str  # "firing" | "resolved"
    ts: float
    alert: AlertState


@dataclass(frozen=True)
class Notification:
    """A message to send: what happened to which alert, with its idempotency key."""

    kind: str  # "firing" | "resolved" | "repeat"
    key: str  # idempotency key: the same transition is the same key, whoever stores it
    ts: float
    alert: AlertState


@dataclass(frozen=True)
class _Held:
    """An active reading that only moves an alert's newest reading: its state before it, the
    reading's time, and how to see it (its Observation, message and all), made when needed."""

    state: AlertState
    ts: float
    seen: Callable[[], Observation]


@dataclass
class Outcome:
    """What an evaluation changes: new states (None: gone), transitions, notifications."""

    states: dict[str, AlertState | None] = field(default_factory=dict)
    transitions: list[Transition] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    # While an evaluation runs: alerts whose newest active reading is held, not yet applied to
    # their state in `states` (see Engine.hold_active); none once it has returned.
    held: dict[str, _Held] = field(default_factory=dict, repr=False, compare=False)

    def __bool__(self) -> bool:
        return bool(self.states)

    def merge(self, other: Outcome) -> None:
        """Add another outcome's changes after this one's."""
        self.states.update(other.states)
        self.transitions += other.transitions
        self.notifications += other.notifications


def alert_key(rule: str, subject_key: str) -> str:
    """Return the key of the alert of rule on subject."""
    return f"{rule}|{subject_key}"


def notification_key(alert: AlertState, kind: str, ts: float) -> str:
    """Return a notification's idempotency key: the same for the same alert, kind and time."""
    digest = hashlib.sha256(f"{alert.key}|{kind}|{ts!r}".encode()).hexdigest()
    return f"pcw-{digest[:24]}"


def _seen_again(
    state: AlertState, ts: float, seen: Observation, cleared_since_ts: float | None
) -> AlertState:
    """Return the state with a newer active reading: replace(state, last_ts=ts, value=...,
    message=..., cleared_since_ts=...), spelled out (it runs for every such reading)."""
    return AlertState(
        state.rule,
        state.severity,
        state.subject,
        state.state,
        state.since_ts,
        ts,
        seen.value,
        seen.message,
        state.fired_ts,
        state.notified_ts,
        cleared_since_ts,
    )


class Engine:
    """The states of every pending and firing alert, moved by observations."""

    def __init__(
        self,
        specs: Mapping[str, RuleSpec],
        repeat_s: float,
        states: Iterable[AlertState] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.specs = dict(specs)
        self.repeat_s = repeat_s
        self.states: dict[str, AlertState] = {state.key: state for state in states}
        self.clock = clock

    def apply(self, outcome: Outcome) -> None:
        """Take a committed outcome's states as the engine's own."""
        for key, state in outcome.states.items():
            if state is None:
                self.states.pop(key, None)
            else:
                self.states[key] = state

    def replace_states(self, states: Iterable[AlertState]) -> None:
        """Forget every state and take these (read back from the file after a failed write)."""
        self.states = {state.key: state for state in states}

    def current(self, outcome: Outcome, key: str) -> AlertState | None:
        """Return an alert's state as the outcome so far leaves it."""
        if outcome.held and key in outcome.held:
            self._apply_held(outcome, key)
        if key in outcome.states:
            return outcome.states[key]
        return self.states.get(key)

    def firing(self, outcome: Outcome, rule: str) -> list[AlertState]:
        """Return the alerts of a rule that are pending or firing, as the outcome leaves them."""
        keys = {k for k in self.states if k.startswith(rule + "|")}
        keys |= {k for k in outcome.states if k.startswith(rule + "|")}
        found = (self.current(outcome, key) for key in sorted(keys))
        return [state for state in found if state is not None]

    def observe(self, outcome: Outcome, rule: str, seen: Observation, ts: float) -> None:
        """Move one alert by what a rule saw at ts (a reading's time, or now)."""
        spec = self.specs[rule]
        key = alert_key(rule, seen.subject.key)
        state = self.current(outcome, key)
        if state is None:
            if seen.active:
                pending = AlertState(
                    rule, spec.severity, seen.subject, "pending", ts, ts, seen.value, seen.message
                )
                self._settle(outcome, spec, pending, ts)
            return
        if ts < state.last_ts and not spec.event:
            return  # an older reading than the state already saw (a replay of another run)
        if state.state == "pending":
            if seen.active:
                state = _seen_again(state, ts, seen, state.cleared_since_ts)
                self._settle(outcome, spec, state, ts)
            else:
                outcome.states[key] = None  # not for long enough: it never fired
            return
        if seen.active:
            state = _seen_again(state, ts, seen, None)
            outcome.states[key] = state
            self._repeat(outcome, state, ts)
        elif seen.cleared:
            since_ts = ts if state.cleared_since_ts is None else state.cleared_since_ts
            state = replace(
                state, cleared_since_ts=since_ts, value=seen.value, message=seen.message
            )
            self._resolve_if_due(outcome, spec, state, ts)
        else:  # between the firing and the clearing value: still firing
            state = replace(state, cleared_since_ts=None)
            outcome.states[key] = state
            self._repeat(outcome, state, ts)

    def hold_active(
        self,
        outcome: Outcome,
        rule: str,
        subject_key: str,
        ts: float,
        seen: Callable[[], Observation],
    ) -> bool:
        """Take an active observation (seen() answers it) that only moves its alert's newest
        reading: a pending alert before its for_s, or a firing one with no repeat due.

        Its Observation and message are made only when the state is next read (current()) or
        the evaluation ends (apply_held()): a GPU that stays idle, hot or throttled for hours
        costs no text per reading. Return False, holding nothing, when the observation would
        do more (or its alert has no state): the caller observe()s it.
        """
        key = alert_key(rule, subject_key)
        held = outcome.held.get(key)
        if held is not None:
            state, last_ts = held.state, held.ts
        else:
            current = self.current(outcome, key)
            if current is None:
                return False
            state, last_ts = current, current.last_ts
        spec = self.specs[rule]
        if spec.event or ts < last_ts:
            return False
        if state.state == "pending":
            if ts - state.since_ts >= spec.for_s:
                return False
        elif state.notified_ts is not None and ts - state.notified_ts >= self.repeat_s:
            return False
        if held is None and key not in outcome.states:
            outcome.states[key] = state
        outcome.held[key] = _Held(state, ts, seen)
        return True

    def apply_held(self, outcome: Outcome) -> None:
        """Make the states of every held observation (see hold_active)."""
        for key in list(outcome.held):
            self._apply_held(outcome, key)

    def _apply_held(self, outcome: Outcome, key: str) -> None:
        held = outcome.held.pop(key)
        state = held.state
        cleared_since_ts = state.cleared_since_ts if state.state == "pending" else None
        outcome.states[key] = _seen_again(state, held.ts, held.seen(), cleared_since_ts)

    def unknown(self, outcome: Outcome, rule: str, subject_key: str) -> None:
        """Take a reading that cannot tell: a pending alert starts its wait again."""
        key = alert_key(rule, subject_key)
        state = self.current(outcome, key)
        if state is not None and state.state == "pending":
            outcome.states[key] = None

    def quiet(
        self, outcome: Outcome, rule: str, subject_prefix: str, ts: float, seen: frozenset[str]
    ) -> None:
        """Resolve the firing event alerts of a subject whose last event is keep_firing_s old.

        seen: the subject keys that had an event at ts (they go on firing).
        """
        spec = self.specs[rule]
        for state in self.firing(outcome, rule):
            subject_key = state.subject.key
            if not subject_key.startswith(subject_prefix) or subject_key in seen:
                continue
            if ts < state.last_ts:
                continue
            if ts - state.last_ts >= spec.keep_firing_s:
                self._resolve(outcome, replace(state, cleared_since_ts=state.last_ts), ts)
            else:
                self._repeat(outcome, state, ts)

    def forget_rules_not_in(self, specs: Mapping[str, RuleSpec], ts: float) -> Outcome:
        """Resolve (and drop) the alerts of rules no longer configured: turned off, or taken out
        of the rule file; nothing else would ever judge them. Applied to the engine at once."""
        outcome = Outcome()
        for state in list(self.states.values()):
            if state.rule in specs:
                continue
            if state.state == "pending":
                outcome.states[state.key] = None
            else:
                text = f"{state.message} (rule {state.rule} is no longer configured)"
                self._resolve(outcome, replace(state, message=text, cleared_since_ts=ts), ts)
        self.apply(outcome)
        return outcome

    def gone(self, outcome: Outcome, host: str, present: set[str], ts: float) -> None:
        """Resolve the alerts of a host's GPUs that its tick no longer holds (replaced, or known
        under another UUID now): nothing else would ever clear them."""
        for key in sorted({*self.states, *outcome.states}):
            # its subject and state as held (see hold_active): the same as once applied
            state = outcome.states[key] if key in outcome.states else self.states.get(key)
            if state is None or state.subject.host != host or state.subject.gpu_uuid is None:
                continue
            if state.subject.gpu_uuid in present:
                continue
            state = self.current(outcome, key)
            assert state is not None
            if state.state == "pending":
                outcome.states[key] = None
            else:
                subject = state.subject
                text = (
                    f"GPU {subject.gpu_index} of {host} ({subject.gpu_uuid}) is no longer"
                    " reported by its host"
                )
                self._resolve(outcome, replace(state, message=text, cleared_since_ts=ts), ts)

    def _settle(self, outcome: Outcome, spec: RuleSpec, state: AlertState, ts: float) -> None:
        if ts - state.since_ts < spec.for_s:
            outcome.states[state.key] = state
            return
        fired = replace(state, state="firing", fired_ts=ts, notified_ts=ts)
        outcome.states[fired.key] = fired
        outcome.transitions.append(Transition("firing", ts, fired))
        outcome.notifications.append(
            Notification("firing", notification_key(fired, "firing", ts), ts, fired)
        )

    def _resolve_if_due(
        self, outcome: Outcome, spec: RuleSpec, state: AlertState, ts: float
    ) -> None:
        assert state.cleared_since_ts is not None
        if ts - state.cleared_since_ts >= spec.keep_firing_s:
            self._resolve(outcome, state, ts)
        else:
            outcome.states[state.key] = state

    def _resolve(self, outcome: Outcome, state: AlertState, ts: float) -> None:
        outcome.states[state.key] = None
        outcome.transitions.append(Transition("resolved", ts, state))
        outcome.notifications.append(
            Notification("resolved", notification_key(state, "resolved", ts), ts, state)
        )

    def _repeat(self, outcome: Outcome, state: AlertState, ts: float) -> None:
        if state.notified_ts is None or ts - state.notified_ts < self.repeat_s:
            return
        state = replace(state, notified_ts=ts)
        outcome.states[state.key] = state
        outcome.notifications.append(
            Notification("repeat", notification_key(state, "repeat", ts), ts, state)
        )
