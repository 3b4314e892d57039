"""NVML's values in this project's units: NVML_VALUE_NOT_AVAILABLE is None, never 0 nor huge;
and NVML's functions by name, an older driver's missing one raising FunctionNotFound.

NVML_VALUE_NOT_AVAILABLE is -1: all ones in an unsigned int or unsigned long long field.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

NOT_AVAILABLE_U32 = 0xFFFFFFFF
NOT_AVAILABLE_U64 = 0xFFFFFFFFFFFFFFFF
MIB = 1 << 20
MAX_BYTES = 1 << 60  # the codec's bound


def u32(value: int | None) -> int | None:
    """Return an unsigned int field, None where NVML could not tell (NVML_VALUE_NOT_AVAILABLE)."""
    if value is None:
        return None
    value = int(value)
    return None if value < 0 or value >= NOT_AVAILABLE_U32 else value


def u64(value: int | None) -> int | None:
    """Return an unsigned long long field, None where NVML could not tell."""
    if value is None:
        return None
    value = int(value)
    return None if value < 0 or value >= NOT_AVAILABLE_U64 else value


def byte_count(value: int | None) -> int | None:
    """Return a byte count, or None where NVML could not tell (None or NVML_VALUE_NOT_AVAILABLE)."""
    count = u64(value)
    return None if count is None or count > MAX_BYTES else count


def add(total: int | None, value: int | None) -> int | None:
    """Return the sum of two byte counts, None when either is unknown."""
    return None if total is None or value is None else total + value


def pct(value: int | None) -> int | None:
    """Return a percentage within 0-100 (some fans report over 100 %), or None."""
    percent = u32(value)
    return None if percent is None else min(100, percent)


def pct_float(value: float | None) -> float | None:
    """Return a float percentage within 0-100 (NVML's rounding may pass 100), or None.

    None where NVML could not tell: a negative value or NaN.
    """
    if value is None or not value >= 0:  # NaN fails every comparison
        return None
    return min(100.0, float(value))


def mib_per_s_bytes(value: float | None) -> int | None:
    """Return a rate in MiB/s (float) as whole bytes per second, or None (negative, NaN, huge)."""
    if value is None or not value >= 0:
        return None
    return byte_count(round(value * MIB)) if value * MIB <= MAX_BYTES else None


def milli(value: int | None) -> float | None:
    """Return an unsigned int of thousandths (mW, mJ) in units (W, J), or None."""
    count = u32(value)
    return None if count is None else count / 1000


def mig_profile(name: str) -> str | None:
    """Return the GPU instance profile ("1g.10gb") a MIG device's name ends with, or None.

    NVML names a MIG device after its parent, then "MIG" and its profile: "NVIDIA H100 80GB HBM3
    MIG 1g.10gb". A compute instance smaller than its GPU instance adds its own slices in front
    ("MIG 1c.3g.40gb"), which dcgm-exporter's GPU_I_PROFILE, the GPU instance's, leaves out.
    """
    _, found, profile = name.rpartition(" MIG ")
    profile = profile.strip()
    if not found or not profile:
        return None
    slices, dot, rest = profile.partition(".")
    if dot and slices.endswith("c") and slices[:-1].isdigit() and "g." in rest:
        profile = rest
    return profile if "g." in profile else None


def nvml_function(nvml: Any, *names: str) -> Callable[..., Any]:
    """Return the first of NVML's functions by name that this pynvml has, else one that raises
    FunctionNotFound (as a newer pynvml does over an older driver)."""
    for name in names:
        function = getattr(nvml, name, None)
        if function is not None:
            return function

    def missing(*_: Any) -> Any:
        raise nvml.NVMLError(nvml.NVML_ERROR_FUNCTION_NOT_FOUND)

    return missing
