"""Parse and check the query strings of the processes, usage and energy APIs.

Every refusal is a ParamError naming the parameter and the rule, answered with 400.
"""

from __future__ import annotations

from dataclasses import dataclass

from multidict import MultiMapping

from services.web.params import (
    ParamError,
    check_gpu_uuid,
    parse_epoch,
    parse_hosts,
    shown,
)
from services.web.usage import USAGE_KEYS

DEFAULT_USAGE_RANGE_S = 86400.0


@dataclass(frozen=True)
class RangeQuery:
    """A checked range, UTC epoch seconds, from_s < to_s, with its grouping or host filter."""

    from_s: float
    to_s: float
    by: str = "user"
    hosts: tuple[str, ...] = ()


def parse_processes_query(query: MultiMapping[str]) -> tuple[str, float | None]:
    """Return (gpu UUID, at in epoch seconds or None for the newest tick)."""
    _only(query, ("gpu", "at"))
    uuid = _once(query, "gpu")
    if uuid is None:
        raise ParamError("gpu is required: the UUID of one GPU")
    check_gpu_uuid(uuid)
    at = _once(query, "at")
    return uuid, None if at is None else parse_epoch("at", at)


def parse_usage_query(query: MultiMapping[str], now_s: float) -> RangeQuery:
    """Return the checked range and `by` (user, process or container; user by default)."""
    _only(query, ("from", "to", "by"))
    from_s, to_s = _range(query, now_s)
    by = _once(query, "by")
    if by is None:
        by = "user"
    elif by not in USAGE_KEYS:  # an empty by= too: a typo is refused, not read as the default
        raise ParamError(f"by={shown(by)} is not one of {', '.join(USAGE_KEYS)}")
    return RangeQuery(from_s, to_s, by=by)


def parse_energy_query(query: MultiMapping[str], now_s: float) -> RangeQuery:
    """Return the checked range and the hosts asked for (host may be repeated; none: all)."""
    _only(query, ("from", "to", "host"))
    from_s, to_s = _range(query, now_s)
    return RangeQuery(from_s, to_s, hosts=parse_hosts(query.getall("host", [])))


def _range(query: MultiMapping[str], now_s: float) -> tuple[float, float]:
    """Return (from_s, to_s): `to` defaults to now_s, `from` to a day before `to`."""
    to_text, from_text = _once(query, "to"), _once(query, "from")
    to_s = now_s if to_text is None else parse_epoch("to", to_text)
    default_from_s = max(0.0, to_s - DEFAULT_USAGE_RANGE_S)
    from_s = default_from_s if from_text is None else parse_epoch("from", from_text)
    if from_s >= to_s:
        raise ParamError(f"from ({from_s:g}) must be before to ({to_s:g})")
    return from_s, to_s


def _only(query: MultiMapping[str], allowed: tuple[str, ...]) -> None:
    for name in query:
        if name not in allowed:
            raise ParamError(f"unknown parameter {shown(name)}; allowed: {', '.join(allowed)}")


def _once(query: MultiMapping[str], name: str) -> str | None:
    given = query.getall(name, [])
    if len(given) > 1:
        raise ParamError(f"{name} is given {len(given)} times; give it once")
    return given[0] if given else None
