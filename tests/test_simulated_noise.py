"""The simulated GPUs' noise: the same values whatever order it is asked in, two seconds held."""

from __future__ import annotations

import random

from services.sampler.simulated_nvml import _noise_of_second, _RecentNoise


def test_recent_noise_answers_as_computed_and_holds_two_seconds():
    noise = _RecentNoise()
    asked = random.Random(7)
    keys = [f"GPU-{n}{suffix}" for n in range(8) for suffix in ("", "t", "hbm")]
    second = 1_700_000_000
    for _ in range(3000):
        # mostly the newest second, sometimes the one before, an older one, or a jump ahead
        second += asked.choice([0] * 12 + [1, 3])
        when = second - asked.choice([0] * 8 + [1, 2, 600])
        key = asked.choice(keys)
        assert noise(key, when) == _noise_of_second(key, when)
        assert len(noise._newest) <= len(keys) and len(noise._previous) <= len(keys)
    assert noise._newest  # it did keep the newest second's values
