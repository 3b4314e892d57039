"""Build the tick message from one reading, with values that will pass the codec's validation."""

from __future__ import annotations

import logging
import re

import msgspec

from common.messages import GpuReading, Tick
from services.sampler.nvml import TickReading

log = logging.getLogger(__name__)

_FIELD_IN_ERROR = re.compile(r"at `\$\.(\w+)`")
_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(GpuReading)
_MAX_FIXES = len(GpuReading.__struct_fields__)


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
        error=reading.error,
        gpus=[_valid(gpu) for gpu in reading.gpus],
    )


def _valid(gpu: GpuReading) -> GpuReading:
    """Return gpu with every field that the decoder would reject set to None (logged)."""
    for _ in range(_MAX_FIXES):
        try:
            return _DECODER.decode(_ENCODER.encode(gpu))
        except msgspec.ValidationError as error:
            match = _FIELD_IN_ERROR.search(str(error))
            field = match.group(1) if match else None
            if field is None or field in ("index", "uuid", "name"):
                raise
            log.warning("GPU %s: %s out of range (%s); sent as null", gpu.uuid, field, error)
            gpu = msgspec.structs.replace(gpu, **{field: None})
    return gpu
