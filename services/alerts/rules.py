"""The built-in alert rules and users' own, as checks of one reading (pure).

Each GPU check looks at one reading and answers an Observation, or None when the reading cannot
tell (a null metric, an unknown limit). The host and writer rules are judged by time in
services.alerts.evaluator. Thresholds come from the PCW_ALERT_* settings (common.config).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from common.config import Config
from common.health import LIMITING_REASONS_MASK, is_busy, limiting_reasons, link_downgraded
from common.health import link_text as pcie_link_text
from common.idle import Reading as IdleReading
from common.idle import is_idle_allocated
from common.messages import GpuProcess, GpuReading
from common.metrics import METRIC_NAMES
from services.alerts.engine import Observation, RuleSpec, Subject
from services.alerts.rule_file import UserRule

GPU_ERROR, XID, TEMPERATURE, THROTTLING, ECC = (
    "gpu_error",
    "xid",
    "temperature",
    "throttling",
    "ecc",
)
PCIE_LINK, HOST_STALE, WRITER_DEGRADED, IDLE = (
    "pcie_link",
    "host_stale",
    "writer_degraded",
    ("idle_allocated"),
)
# Each built-in rule's severity (PCW_ALERTS_OFF turns one off; none can be changed).
BUILT_IN_SEVERITY = {
    GPU_ERROR: "critical",
    XID: "critical",
    TEMPERATURE: "warning",
    THROTTLING: "warning",
    ECC: "critical",
    PCIE_LINK: "warning",
    HOST_STALE: "critical",
    WRITER_DEGRADED: "critical",
    IDLE: "info",
}
TEMP_CLEAR_C = 3  # a hot GPU resolves this far below where it fired
XID_HOLD_MIN_S = 1.0


def rule_specs(config: Config, user_rules: tuple[UserRule, ...]) -> dict[str, RuleSpec]:
    """Return the spec of every enabled rule, built-in and the user's."""
    keep_s = config.alert_keep_firing_s
    timing = {
        GPU_ERROR: (0.0, keep_s),
        XID: (0.0, max(config.alert_xid_hold_s, XID_HOLD_MIN_S)),
        TEMPERATURE: (config.alert_temp_for_s, keep_s),
        THROTTLING: (config.alert_throttle_for_s, keep_s),
        ECC: (0.0, keep_s),
        PCIE_LINK: (config.alert_pcie_for_s, keep_s),
        HOST_STALE: (config.alert_stale_for_s, 0.0),
        WRITER_DEGRADED: (config.alert_writer_for_s, 0.0),
        IDLE: (config.alert_idle_for_s, keep_s),
    }
    specs = {
        name: RuleSpec(name, BUILT_IN_SEVERITY[name], for_s, keep, event=name == XID)
        for name, (for_s, keep) in timing.items()
    }
    for rule in user_rules:
        specs[rule.name] = RuleSpec(rule.name, rule.severity, rule.for_s, keep_s)
    return {name: spec for name, spec in specs.items() if name not in config.alerts_off}


def gpu_subject(host: str, reading: GpuReading) -> Subject:
    """Return the subject of a GPU's alerts."""
    return Subject(gpu_subject_key(host, reading), host, reading.uuid, reading.index, reading.name)


def gpu_subject_key(host: str, reading: GpuReading) -> str:
    """Return the key part of a GPU's alerts, "host/UUID"."""
    return f"{host}/{reading.uuid}"


def where(host: str, reading: GpuReading) -> str:
    """Return "GPU 3 of gpu-node-2"."""
    return f"GPU {reading.index} of {host}"


GpuCheck = Callable[[str, GpuReading], Observation | None]
# The places, in a tick's list of readings, of those whose check answers active (any reading in
# error included or not: the evaluator judges those whole). A reading left out, of a GPU with no
# alert of the rule, changes nothing: this is what lets a steady tick cost no Observation.
GpuSelect = Callable[[str, Sequence[GpuReading]], list[int]]


def _seen(
    host: str, reading: GpuReading, active: bool, value: float | None, text: str
) -> Observation:
    return Observation(gpu_subject(host, reading), active, not active, value, text)


def check_error(host: str, reading: GpuReading) -> Observation:
    """Return whether the GPU is lost or in error (an errored reading)."""
    if reading.error is None:
        text = f"{where(host, reading)} reads again"
    else:
        text = f"{where(host, reading)} is in error: {reading.error}"
    return _seen(host, reading, reading.error is not None, None, text)


def temperature_check(margin_c: float) -> GpuCheck:
    """Return the check: temperature within margin_c of the GPU's own slowdown threshold."""

    def check(host: str, reading: GpuReading) -> Observation | None:
        limits, temp_c = reading.limits, reading.temp_c
        slowdown_c = None if limits is None else limits.temp_slowdown_c
        if temp_c is None or slowdown_c is None:
            return None
        fire_at_c = slowdown_c - margin_c
        text = f"{where(host, reading)} is at {temp_c} °C, its slowdown is at {slowdown_c} °C"
        subject = gpu_subject(host, reading)
        return Observation(
            subject, temp_c >= fire_at_c, temp_c < fire_at_c - TEMP_CLEAR_C, temp_c, text
        )

    return check


def temperature_active(margin_c: float) -> GpuSelect:
    """Return the selector of temperature_check(margin_c)'s active readings."""

    def active(host: str, readings: Sequence[GpuReading]) -> list[int]:
        return [
            place
            for place, reading in enumerate(readings)
            if (temp_c := reading.temp_c) is not None
            and (limits := reading.limits) is not None
            and (slowdown_c := limits.temp_slowdown_c) is not None
            and temp_c >= slowdown_c - margin_c
        ]

    return active


def check_throttling(host: str, reading: GpuReading) -> Observation | None:
    """Return whether heat or a power brake holds the clocks down."""
    health = reading.health
    mask = None if health is None else health.clocks_event_reasons
    if mask is None:
        return None
    limiting = limiting_reasons(mask)
    if limiting:
        text = f"{where(host, reading)} is throttled: {', '.join(limiting)}"
    else:
        text = f"{where(host, reading)} is no longer throttled by heat or the power brake"
    return _seen(host, reading, bool(mask & LIMITING_REASONS_MASK), mask, text)


def throttling_active(host: str, readings: Sequence[GpuReading]) -> list[int]:
    """Return the places of the readings check_throttling answers active."""
    return [
        place
        for place, reading in enumerate(readings)
        if (health := reading.health) is not None
        and (mask := health.clocks_event_reasons) is not None
        and mask & LIMITING_REASONS_MASK
    ]


def check_ecc(host: str, reading: GpuReading) -> Observation | None:
    """Return whether the GPU has uncorrected ECC errors, a failed or a pending row remap."""
    health = reading.health
    if health is None:
        return None
    problems = []
    if health.ecc_uncorrected_volatile:
        problems.append(f"{health.ecc_uncorrected_volatile} uncorrected ECC error(s)")
    if health.remap_failure:
        problems.append("row remapping failed")
    if health.remap_pending:
        problems.append("rows pending remap (a GPU reset applies it)")
    known = (health.ecc_uncorrected_volatile, health.remap_failure, health.remap_pending)
    if not problems and all(value is None for value in known):
        return None
    text = f"{where(host, reading)}: {'; '.join(problems) or 'memory errors cleared'}"
    return _seen(host, reading, bool(problems), health.ecc_uncorrected_volatile, text)


def ecc_active(host: str, readings: Sequence[GpuReading]) -> list[int]:
    """Return the places of the readings check_ecc answers active."""
    return [
        place
        for place, reading in enumerate(readings)
        if (health := reading.health) is not None
        and (health.ecc_uncorrected_volatile or health.remap_failure or health.remap_pending)
    ]


def check_pcie(host: str, reading: GpuReading) -> Observation | None:
    """Return whether the PCIe link runs narrower, or slower while busy, than it can."""
    health, limits = reading.health, reading.limits
    if health is None or limits is None or health.pcie_link_width is None:
        return None
    busy = is_busy(reading.util_gpu_pct)
    down = link_downgraded(health, limits, busy)
    if not down and not busy:
        return None  # an idle GPU's lower generation says nothing of its link
    text = f"{where(host, reading)}: {pcie_link_text(health, limits)}"
    return _seen(host, reading, down, health.pcie_link_width, text)


def pcie_active(host: str, readings: Sequence[GpuReading]) -> list[int]:
    """Return the places of the readings check_pcie answers active (its link downgraded).

    Only a link under its maximum width or generation can be downgraded: that cheap test
    spares link_downgraded the full-speed links.
    """
    return [
        place
        for place, reading in enumerate(readings)
        if (health := reading.health) is not None
        and (limits := reading.limits) is not None
        and (width := health.pcie_link_width) is not None
        and (
            ((max_width := limits.pcie_max_width) is not None and width < max_width)
            or (
                (gen := health.pcie_link_gen) is not None
                and (max_gen := limits.pcie_max_gen) is not None
                and gen < max_gen
            )
        )
        and link_downgraded(health, limits, is_busy(reading.util_gpu_pct))
    ]


def holders(processes: list[GpuProcess] | None) -> str:
    """Return who holds a GPU: "carol's notebook in container jupyter-3; ..." ("" if unknown)."""
    if not processes:
        return ""
    named = []
    for process in processes:
        if process.used_mem_bytes == 0:
            continue
        who = f"{process.user}'s " if process.user else ""
        what = process.name or f"process {process.pid}"
        where_ = process.container_name or process.container_id
        named.append(
            f"{who}{what} (pid {process.pid})" + (f" in container {where_}" if where_ else "")
        )
    return "; ".join(named)


def idle_check(util_pct: float, idle_for_s: float) -> GpuCheck:
    """Return the check: the GPU holds memory while under util_pct."""

    hours = _duration(idle_for_s)

    def check(host: str, reading: GpuReading) -> Observation | None:
        if reading.util_gpu_pct is None:
            return None
        active = _idle_allocated(reading, util_pct)
        who = holders(reading.processes) or "memory is allocated"
        if active:
            text = f"{who} has held {where(host, reading)} idle for {hours}"
        else:
            text = f"{where(host, reading)} is no longer idle while allocated"
        return _seen(host, reading, active, reading.util_gpu_pct, text)

    return check


def idle_active(util_pct: float) -> GpuSelect:
    """Return the selector of idle_check(util_pct, ...)'s active readings."""

    def active(host: str, readings: Sequence[GpuReading]) -> list[int]:
        return [
            place
            for place, reading in enumerate(readings)
            if (util := reading.util_gpu_pct) is not None
            and util < util_pct  # else not idle: spares the full test below
            and _idle_allocated(reading, util_pct)
        ]

    return active


def _idle_allocated(reading: GpuReading, util_pct: float) -> bool:
    processes = reading.processes
    held = processes is not None and any(p.used_mem_bytes != 0 for p in processes)
    idle = IdleReading(0.0, reading.util_gpu_pct, reading.mem_used_bytes, reading.mem_total_bytes)
    return is_idle_allocated(idle, util_pct, processes is not None, held)


def user_check(rule: UserRule) -> GpuCheck:
    """Return the check of a user's rule over one metric of the history."""
    column = METRIC_NAMES.index(rule.metric)

    def check(host: str, reading: GpuReading) -> Observation | None:
        if not rule.matches(host, reading.index, reading.uuid):  # (no longer) watched: clear
            text = f"{where(host, reading)} is not watched by rule {rule.name}"
            return Observation(gpu_subject(host, reading), False, True, None, text)
        value = reading.metric_values()[column]
        if value is None:
            return None
        text = rule.render(
            host=host,
            gpu_index=reading.index,
            gpu_uuid=reading.uuid,
            gpu_name=reading.name,
            value=value,
            threshold=rule.threshold,
            metric=rule.metric,
            op=rule.op,
            rule=rule.name,
            severity=rule.severity,
            **{"for": _duration(rule.for_s)},
        )
        subject = gpu_subject(host, reading)
        return Observation(subject, rule.condition(value), rule.cleared(value), value, text)

    return check


def user_active(rule: UserRule) -> GpuSelect:
    """Return the selector of user_check(rule)'s active readings."""
    column = METRIC_NAMES.index(rule.metric)

    def active(host: str, readings: Sequence[GpuReading]) -> list[int]:
        return [
            place
            for place, reading in enumerate(readings)
            if rule.matches(host, reading.index, reading.uuid)
            and (value := reading.metric_values()[column]) is not None
            and rule.condition(value)
        ]

    return active


@dataclass(frozen=True)
class GpuRule:
    """A rule judged on each GPU reading: check answers what it sees in one reading; active
    picks, in one pass over a tick's readings, those whose check would answer active."""

    name: str
    check: GpuCheck
    active: GpuSelect


def gpu_rules(config: Config, user_rules: tuple[UserRule, ...]) -> tuple[GpuRule, ...]:
    """Return the enabled rules judged on each reading of a GPU free of error, in order."""
    rules = [
        GpuRule(
            TEMPERATURE,
            temperature_check(config.alert_temp_margin_c),
            temperature_active(config.alert_temp_margin_c),
        ),
        GpuRule(THROTTLING, check_throttling, throttling_active),
        GpuRule(ECC, check_ecc, ecc_active),
        GpuRule(PCIE_LINK, check_pcie, pcie_active),
        GpuRule(
            IDLE,
            idle_check(config.idle_util_pct, config.alert_idle_for_s),
            idle_active(config.idle_util_pct),
        ),
    ]
    rules += [GpuRule(rule.name, user_check(rule), user_active(rule)) for rule in user_rules]
    return tuple(rule for rule in rules if rule.name not in config.alerts_off)


def _duration(seconds: float) -> str:
    """Return 6 h, 5 min, 30 s."""
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g} h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g} min"
    return f"{seconds:g} s"
