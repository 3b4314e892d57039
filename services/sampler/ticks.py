"""Build the tick message from one reading, with values that will pass the codec's validation."""

from __future__ import annotations

import logging
import typing

import msgspec

from common.messages import GpuReading, Tick
from common.throttle import ThrottledLog
from services.sampler.nvml import TickReading

log = logging.getLogger(__name__)
# A sensor stuck out of range would otherwise log a line every tick, for as long as it stays.
_OUT_OF_RANGE = ThrottledLog(log)

_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(GpuReading)
# One decoder per field, with the field's own constraints, to find which field is out of range.
_HINTS = typing.get_type_hints(GpuReading, include_extras=True)
_FIELD_DECODERS = {
    name: msgspec.msgpack.Decoder(_HINTS[name]) for name in GpuReading.__struct_fields__
}


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


def _field_error(name: str, value: object) -> msgspec.ValidationError | None:
    """Return why the decoder would reject value for the field name, None if it would not."""
    try:
        _FIELD_DECODERS[name].decode(_ENCODER.encode(value))
    except msgspec.ValidationError as error:
        return error
    return None


def _valid(gpu: GpuReading) -> GpuReading:
    """Return gpu with every field that the decoder would reject set to None.

    Logged once a minute at most for each GPU and field (common.throttle).
    """
    try:
        return _DECODER.decode(_ENCODER.encode(gpu))
    except msgspec.ValidationError:
        bad = {
            name: error
            for name in GpuReading.__struct_fields__
            if (error := _field_error(name, getattr(gpu, name))) is not None
        }
        if not bad or any(_field_error(name, None) is not None for name in bad):
            raise  # an identity field, or one that cannot be null
    for name, error in bad.items():
        _OUT_OF_RANGE.log(
            f"{gpu.uuid}/{name}",
            logging.WARNING,
            "GPU %s: %s out of range (%s); sent as null",
            gpu.uuid,
            name,
            error,
        )
    return _DECODER.decode(_ENCODER.encode(msgspec.structs.replace(gpu, **dict.fromkeys(bad))))
