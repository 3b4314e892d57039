"""The NVML reader's small value conversions, against values written by hand.

NVML says "not available" with 2**64 - 1 (NVML_VALUE_NOT_AVAILABLE for unsigned long long);
a byte count must then be null, never 0 or a huge number.
"""

from __future__ import annotations

import pytest

from services.sampler.nvml_values import add as _add
from services.sampler.nvml_values import byte_count as _bytes
from services.sampler.nvml_values import pct as _pct
from services.sampler.nvml_values import u32 as _u32
from services.sampler.nvml_values import u64 as _u64

NOT_AVAILABLE_ULL = 2**64 - 1


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (0, 0),
        (1, 1),
        (80 << 30, 80 << 30),
        (1 << 60, 1 << 60),  # the codec's bound, still a count
        ((1 << 60) + 1, None),
        (NOT_AVAILABLE_ULL, None),
        (2**32 - 1, 2**32 - 1),  # not a sentinel for a 64-bit count: 4 GiB less a byte
        (-1, None),
    ],
)
def test_byte_counts(value, expected):
    assert _bytes(value) == expected


def test_byte_counts_are_plain_ints():
    assert type(_bytes(True)) is int  # a ctypes or bool-like value comes out as a plain int


@pytest.mark.parametrize(
    ("total", "value", "expected"),
    [(None, 1, None), (1, None, None), (None, None, None), (2, 3, 5), (0, 0, 0)],
)
def test_sums_of_byte_counts(total, value, expected):
    assert _add(total, value) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        (-1, None),  # the signed form of "not available"
        (-3, None),
        (0, 0),
        (1, 1),
        (57, 57),
        (100, 100),
        (101, 100),  # some fans report over 100 %
        (255, 100),
        (2**32 - 2, 100),
        (2**32 - 1, None),  # NVML_VALUE_NOT_AVAILABLE as an unsigned int
    ],
)
def test_percentages_are_clamped_and_not_available_is_null(value, expected):
    assert _pct(value) == expected


@pytest.mark.parametrize(
    ("value", "u32", "u64"),
    [
        (None, None, None),
        (-1, None, None),
        (0, 0, 0),
        (2**32 - 2, 2**32 - 2, 2**32 - 2),
        (2**32 - 1, None, 2**32 - 1),
        (2**64 - 2, None, 2**64 - 2),
        (2**64 - 1, None, None),
    ],
)
def test_unsigned_fields_at_their_not_available_values(value, u32, u64):
    assert (_u32(value), _u64(value)) == (u32, u64)
