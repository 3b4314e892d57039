"""Build the tick message from one reading, with values that will pass the codec's validation."""

from __future__ import annotations

import logging
import re

import msgspec

from common.messages import GpuReading, Tick
from services.sampler.nvml import TickReading

log = logging.getLogger(__name__)

_FIELD_IN_ERROR = re.compile(r"at `\$\.(\w+)`")


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
    for _ in range(len(msgspec.structs.fields(GpuReading))):
        try:
            return msgspec.convert(msgspec.to_builtins(gpu), GpuReading)
        except msgspec.ValidationError as error:
            match = _FIELD_IN_ERROR.search(str(error))
            field = match.group(1) if match else None
            if field is None or field in ("index", "uuid", "name"):
                raise
            log.warning("GPU %s: %s out of range (%s); sent as null", gpu.uuid, field, error)
            gpu = msgspec.structs.replace(gpu, **{field: None})
    return gpu
