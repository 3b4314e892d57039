"""Parse and check the query string of the history API; every refusal names the parameter."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from multidict import MultiMapping

from common.metrics import METRIC_NAMES

DEFAULT_RANGE_S = 3600.0
DEFAULT_POINTS = 500
MAX_POINTS = 2000
MAX_EPOCH_S = 1e11  # the same bound as a tick's timestamp (common.messages.EpochS)
MAX_UUID_CHARS = 96  # the same bound as a GPU's UUID on the wire
MAX_GPUS = 1024
MAX_HOST_CHARS = 253  # the same bound as a tick's host on the wire
MAX_HOSTS = 1024

HISTORY_PARAMETERS = ("gpu", "host", "from", "to", "points", "metric")
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


def parse_history_query(query: MultiMapping[str], now_s: float) -> HistoryQuery:
    """Check the history query string against the rules; raise ParamError naming the first fault.

    `to` defaults to now_s and `from` to an hour before `to`.
    """
    for name in query:
        if name not in HISTORY_PARAMETERS:
            raise ParamError(
                f"unknown parameter {shown(name)}; allowed: {', '.join(HISTORY_PARAMETERS)}"
            )
    single = _single_values(query, ("from", "to", "points"))
    to_s = _epoch(single, "to", now_s)
    from_s = _epoch(single, "from", max(0.0, to_s - DEFAULT_RANGE_S))
    if from_s >= to_s:
        raise ParamError(f"from ({from_s:g}) must be before to ({to_s:g})")
    points = _points(single)
    return HistoryQuery(
        gpu_uuids=_gpu_uuids(query.getall("gpu", [])),
        from_s=from_s,
        to_s=to_s,
        points=points,
        metrics=_metrics(query.getall("metric", [])),
        hosts=parse_hosts(query.getall("host", [])),
    )


def _single_values(query: MultiMapping[str], names: tuple[str, ...]) -> dict[str, str]:
    values: dict[str, str] = {}
    for name in names:
        given = query.getall(name, [])
        if len(given) > 1:
            raise ParamError(f"{name} is given {len(given)} times; give it once")
        if given:
            values[name] = given[0]
    return values


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
    return tuple(name for name in METRIC_NAMES if name in given) if given else METRIC_NAMES


def shown(text: str, limit: int = 40) -> str:
    """Quote user text for an error message, cut to `limit` characters."""
    return repr(text if len(text) <= limit else text[:limit] + "...")
