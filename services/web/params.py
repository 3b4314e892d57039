"""Parse and check the API's query strings: history, processes, usage, energy and events.

Every refusal is a ParamError naming the parameter and the rule, answered with 400. A parameter
not in the route's list is refused, and so is one given twice where it takes one value.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import MultiMapping

from common.messages import MAX_EPOCH_S, MAX_HOST_CHARS, MAX_UUID_CHARS
from common.metrics import CORE_METRIC_NAMES, METRIC_NAMES
from services.web.usage import USAGE_KEYS

DEFAULT_RANGE_S = 3600.0
DEFAULT_USAGE_RANGE_S = 86400.0
DEFAULT_POINTS = 500
MAX_POINTS = 2000
MAX_GPUS = 1024
MAX_HOSTS = 1024

HISTORY_PARAMETERS = ("gpu", "host", "from", "to", "points", "metric", "shape")
# The history's answer: columns (the default), or one object per bucket as before version 10
# of the schema (deprecated: kept one release for scripts that read it).
HISTORY_SHAPES = ("columns", "rows")
PROCESSES_PARAMETERS = ("gpu", "at")
USAGE_PARAMETERS = ("from", "to", "by", "gpu")
ENERGY_PARAMETERS = ("from", "to", "host")
EVENTS_PARAMETERS = ("from", "to", "gpu", "host")
NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d{1,3})?", re.ASCII)
_INTEGER = re.compile(r"\d{1,9}", re.ASCII)


class ParamError(ValueError):
    """A query parameter with a value that is not allowed; the text names it and the rule."""


@dataclass(frozen=True)
class HistoryQuery:
    """A checked history request: times in UTC epoch seconds, from_s < to_s."""

    gpu_uuids: tuple[str, ...]  # empty: every GPU
    from_s: float
    to_s: float
    points: int
    metrics: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # empty: every host; else only the GPUs of these hosts
    shape: str = "columns"  # one of HISTORY_SHAPES


@dataclass(frozen=True)
class RangeQuery:
    """A checked range, UTC epoch seconds, from_s < to_s, with its grouping or host filter."""

    from_s: float
    to_s: float
    by: str = "user"
    hosts: tuple[str, ...] = ()
    gpu_uuids: tuple[str, ...] = ()  # empty: every GPU


def parse_history_query(query: MultiMapping[str], now_s: float) -> HistoryQuery:
    """Check the history query string against the rules; raise ParamError naming the first fault.

    `to` defaults to now_s and `from` to an hour before `to`.
    """
    _only(query, HISTORY_PARAMETERS)
    single = _single(query, ("from", "to", "points", "shape"))
    from_s, to_s = _range(single, now_s, DEFAULT_RANGE_S)
    points = _points(single)
    shape = single.get("shape", HISTORY_SHAPES[0])
    if shape not in HISTORY_SHAPES:
        raise ParamError(f"shape={shown(shape)} is not one of {', '.join(HISTORY_SHAPES)}")
    return HistoryQuery(
        gpu_uuids=_gpu_uuids(query.getall("gpu", [])),
        from_s=from_s,
        to_s=to_s,
        points=points,
        metrics=_metrics(query.getall("metric", [])),
        hosts=parse_hosts(query.getall("host", [])),
        shape=shape,
    )


def parse_processes_query(query: MultiMapping[str]) -> tuple[str, float | None]:
    """Return (gpu UUID, at in epoch seconds or None for the newest tick)."""
    _only(query, PROCESSES_PARAMETERS)
    uuid = _once(query, "gpu")
    if uuid is None:
        raise ParamError("gpu is required: the UUID of one GPU")
    check_gpu_uuid(uuid)
    at = _once(query, "at")
    return uuid, None if at is None else parse_epoch("at", at)


def parse_usage_query(query: MultiMapping[str], now_s: float) -> RangeQuery:
    """Return the checked range, `by` (user, process or container; user by default) and the
    GPUs asked for (gpu may be repeated; none: all).

    `to` defaults to now_s and `from` to a day before `to`.
    """
    _only(query, USAGE_PARAMETERS)
    from_s, to_s = _range(_single(query, ("to", "from")), now_s, DEFAULT_USAGE_RANGE_S)
    by = _once(query, "by")
    if by is None:
        by = "user"
    elif by not in USAGE_KEYS:  # an empty by= too: a typo is refused, not read as the default
        raise ParamError(f"by={shown(by)} is not one of {', '.join(USAGE_KEYS)}")
    return RangeQuery(from_s, to_s, by=by, gpu_uuids=_gpu_uuids(query.getall("gpu", [])))


def parse_energy_query(query: MultiMapping[str], now_s: float) -> RangeQuery:
    """Return the checked range and the hosts asked for (host may be repeated; none: all).

    `to` defaults to now_s and `from` to a day before `to`.
    """
    _only(query, ENERGY_PARAMETERS)
    from_s, to_s = _range(_single(query, ("to", "from")), now_s, DEFAULT_USAGE_RANGE_S)
    return RangeQuery(from_s, to_s, hosts=parse_hosts(query.getall("host", [])))


def parse_events_query(query: MultiMapping[str], now_s: float) -> RangeQuery:
    """Return the checked range, GPUs and hosts (each may repeat; none: all).

    `to` defaults to now_s and `from` to a day before `to`.
    """
    _only(query, EVENTS_PARAMETERS)
    from_s, to_s = _range(_single(query, ("to", "from")), now_s, DEFAULT_USAGE_RANGE_S)
    return RangeQuery(
        from_s,
        to_s,
        hosts=parse_hosts(query.getall("host", [])),
        gpu_uuids=_gpu_uuids(query.getall("gpu", [])),
    )


def _only(query: MultiMapping[str], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed:
            raise ParamError(f"unknown parameter {shown(name)}; allowed: {', '.join(allowed)}")


def _once(query: MultiMapping[str], name: str) -> str | None:
    given = query.getall(name, [])
    if len(given) > 1:
        raise ParamError(f"{name} is given {len(given)} times; give it once")
    return given[0] if given else None


def _single(query: MultiMapping[str], names: tuple[str, ...]) -> dict[str, str]:
    """Return the value of each of names that is given, checking each in turn is given once."""
    values = {name: _once(query, name) for name in names}
    return {name: value for name, value in values.items() if value is not None}


def _range(values: Mapping[str, str], now_s: float, default_range_s: float) -> tuple[float, float]:
    """Return (from_s, to_s): `to` defaults to now_s, `from` to default_range_s before `to`."""
    to_s = _epoch(values, "to", now_s)
    from_s = _epoch(values, "from", max(0.0, to_s - default_range_s))
    if from_s >= to_s:
        raise ParamError(f"from ({from_s:g}) must be before to ({to_s:g})")
    return from_s, to_s


def _epoch(values: Mapping[str, str], name: str, default: float) -> float:
    text = values.get(name)
    return default if text is None else parse_epoch(name, text)


def parse_epoch(name: str, text: str) -> float:
    """Return the epoch seconds of parameter `name`, or raise ParamError saying what is allowed."""
    if not NUMBER.fullmatch(text):
        raise ParamError(f"{name}={shown(text)} is not a number of epoch seconds")
    value = float(text)
    if not (math.isfinite(value) and 0 <= value <= MAX_EPOCH_S):
        raise ParamError(f"{name}={shown(text)} is not between 0 and {MAX_EPOCH_S:g} seconds")
    return value


def _points(values: Mapping[str, str]) -> int:
    text = values.get("points")
    if text is None:
        return DEFAULT_POINTS
    if not _INTEGER.fullmatch(text) or not 1 <= int(text) <= MAX_POINTS:
        raise ParamError(f"points={shown(text)} is not an integer from 1 to {MAX_POINTS}")
    return int(text)


def _gpu_uuids(given: list[str]) -> tuple[str, ...]:
    if len(given) > MAX_GPUS:
        raise ParamError(f"gpu is given {len(given)} times; at most {MAX_GPUS}")
    for uuid in given:
        check_gpu_uuid(uuid)
    return tuple(dict.fromkeys(given))


def check_gpu_uuid(uuid: str) -> str:
    """Return uuid if it can be a GPU UUID, else raise ParamError."""
    if not uuid or len(uuid) > MAX_UUID_CHARS or not uuid.isprintable():
        raise ParamError(
            f"gpu={shown(uuid)} is not a GPU UUID (1 to {MAX_UUID_CHARS} printable characters)"
        )
    return uuid


def parse_hosts(given: list[str]) -> tuple[str, ...]:
    """Return the host names asked for, each once, or raise ParamError for a bad one."""
    if len(given) > MAX_HOSTS:
        raise ParamError(f"host is given {len(given)} times; at most {MAX_HOSTS}")
    for host in given:
        if not host or len(host) > MAX_HOST_CHARS or not host.isprintable():
            raise ParamError(
                f"host={shown(host)} is not a host name"
                f" (1 to {MAX_HOST_CHARS} printable characters)"
            )
    return tuple(dict.fromkeys(given))


def _metrics(given: list[str]) -> tuple[str, ...]:
    for name in given:
        if name not in METRIC_NAMES:
            raise ParamError(f"metric={shown(name)} is not one of {', '.join(METRIC_NAMES)}")
    return tuple(name for name in METRIC_NAMES if name in given) if given else CORE_METRIC_NAMES


def shown(text: str, limit: int = 40) -> str:
    """Quote user text for an error message, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


ALERTS_PARAMETERS = ("state", "from", "to", "rule", "host")
ALERT_STATES = ("pending", "firing", "resolved")
DEFAULT_ALERTS_RANGE_S = 7 * 86400.0


@dataclass(frozen=True)
class AlertsQuery:
    """A checked alerts request: the range of transitions and the filters (None: any)."""

    from_s: float
    to_s: float
    state: str | None
    rule: str | None
    host: str | None


def parse_alerts_query(query: MultiMapping[str], now_s: float) -> AlertsQuery:
    """Return the checked range (default: the last 7 days) and filters of /api/v1/alerts."""
    _only(query, ALERTS_PARAMETERS)
    single = _single(query, ALERTS_PARAMETERS)
    from_s, to_s = _range(single, now_s, DEFAULT_ALERTS_RANGE_S)
    state = single.get("state")
    if state is not None and state not in ALERT_STATES:
        raise ParamError(f"state={shown(state)} is not one of {', '.join(ALERT_STATES)}")
    rule = single.get("rule")
    if rule is not None and not (0 < len(rule) <= 64 and rule.isprintable()):
        raise ParamError(f"rule={shown(rule)} is not a rule name (1 to 64 printable characters)")
    host = parse_hosts([single["host"]])[0] if "host" in single else None
    return AlertsQuery(from_s, to_s, state, rule, host)
