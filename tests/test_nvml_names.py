"""The reader names NVML's codes as pynvml does, and the simulation gives them pynvml's values."""

from __future__ import annotations

import pynvml

from services.sampler.nvml import DRIVER_LEVEL_ERRORS, GPU_LOST_ERRORS, UNAVAILABLE_ERRORS
from services.sampler.simulated_nvml import SimulatedNvml

USED = (
    *DRIVER_LEVEL_ERRORS,
    *GPU_LOST_ERRORS,
    *UNAVAILABLE_ERRORS,
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
    "NVML_ERROR_NOT_FOUND",
    "NVML_PSTATE_UNKNOWN",
    "NVML_DEVICE_MIG_ENABLE",
)


def test_every_nvml_name_the_reader_uses_has_pynvml_s_value_in_the_simulation():
    simulated = SimulatedNvml(1)

    differ = {
        name: (getattr(simulated, name, None), getattr(pynvml, name))
        for name in USED
        if getattr(simulated, name, None) != getattr(pynvml, name)
    }

    assert differ == {}
