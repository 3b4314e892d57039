"""Build the tick message from one reading, with values that will pass the codec's validation."""

from __future__ import annotations

import logging
import typing
from typing import TypeVar

import msgspec

from common.messages import GpuHealth, GpuLimits, GpuReading, Tick
from common.throttle import ThrottledLog
from services.sampler.nvml import TickReading

log = logging.getLogger(__name__)
S = TypeVar("S", bound=msgspec.Struct)
# A sensor stuck out of range would otherwise log a line every tick, for as long as it stays.
_OUT_OF_RANGE = ThrottledLog(log)

_ENCODER = msgspec.msgpack.Encoder()


class _Checks:
    """The decoder of one message struct, and one per field with the field's own constraints,
    to find which field is out of range."""

    def __init__(self, kind: type[msgspec.Struct]) -> None:
        hints = typing.get_type_hints(kind, include_extras=True)
        self.whole = msgspec.msgpack.Decoder(kind)
        self.fields = {
            name: msgspec.msgpack.Decoder(hints[name]) for name in kind.__struct_fields__
        }


_CHECKS = {kind: _Checks(kind) for kind in (GpuReading, GpuHealth, GpuLimits)}
# a value out of range in one of these nulls that value alone, not all of the GPU's health
_NESTED = ("health", "limits")


def build_tick(
    reading: TickReading, host: str, sampler_id: str, seq: int, ts: float, interval_s: float
) -> Tick:
    """Return the tick for one reading; a metric outside its valid range becomes null."""
    return Tick(
        host=host,
        sampler_id=sampler_id,
        seq=seq,
        ts=ts,
        interval_s=interval_s,
        driver_version=reading.driver_version,
        cuda_version=reading.cuda_version,
        error=reading.error,
        gpus=[_valid(gpu) for gpu in reading.gpus],
    )


def _field_error(checks: _Checks, name: str, value: object) -> msgspec.ValidationError | None:
    """Return why the decoder would reject value for the field name, None if it would not."""
    try:
        checks.fields[name].decode(_ENCODER.encode(value))
    except msgspec.ValidationError as error:
        return error
    return None


def _valid(gpu: GpuReading) -> GpuReading:
    """Return gpu with every field that the decoder would reject set to None, inside its health
    and limits too.

    Logged once a minute at most for each GPU and field (common.throttle).
    """
    try:  # the common case: all in range, one encode and decode
        return _CHECKS[GpuReading].whole.decode(_ENCODER.encode(gpu))
    except msgspec.ValidationError:
        pass
    nested = {
        name: _cleaned(value, gpu.uuid, f"{name}.")
        for name in _NESTED
        if (value := getattr(gpu, name)) is not None
    }
    return _cleaned(msgspec.structs.replace(gpu, **nested), gpu.uuid, "")


def _cleaned(struct: S, uuid: str, path: str) -> S:
    """Return struct with each field its decoder would reject set to None (raise if one cannot
    be null: an identity field)."""
    checks = _CHECKS[type(struct)]
    try:
        return checks.whole.decode(_ENCODER.encode(struct))
    except msgspec.ValidationError:
        bad = {
            name: error
            for name in type(struct).__struct_fields__
            if (error := _field_error(checks, name, getattr(struct, name))) is not None
        }
        if not bad or any(_field_error(checks, name, None) is not None for name in bad):
            raise
    for name, error in bad.items():
        _OUT_OF_RANGE.log(
            f"{uuid}/{path}{name}",
            logging.WARNING,
            "GPU %s: %s out of range (%s); sent as null",
            uuid,
            path + name,
            error,
        )
    return checks.whole.decode(
        _ENCODER.encode(msgspec.structs.replace(struct, **dict.fromkeys(bad)))
    )
