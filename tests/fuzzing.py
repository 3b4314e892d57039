"""What the decoders' fuzz tests share: how many examples, and how a valid encoding is mutated."""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# PCW_FUZZ_EXAMPLES=100000 for a long run; the default keeps the suite fast.
FUZZ_EXAMPLES = int(os.environ.get("PCW_FUZZ_EXAMPLES", "10000"))


def fuzz(share: float = 1.0) -> settings:
    """Return Hypothesis settings for share of PCW_FUZZ_EXAMPLES (slow strategies take less)."""
    return settings(
        max_examples=max(10, int(FUZZ_EXAMPLES * share)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )


def mutate(data: bytes, mutations: list[tuple[str, int, int]]) -> bytes:
    """Return data with bytes flipped, inserted, deleted or overwritten."""
    out = bytearray(data)
    for kind, where, byte in mutations:
        position = where % (len(out) or 1)
        if kind == "insert":
            out.insert(position, byte)
        elif not out:
            continue
        elif kind == "flip":
            out[position] ^= 1 << (byte % 8)
        elif kind == "delete":
            del out[position]
        else:
            out[position] = byte
    return bytes(out)
