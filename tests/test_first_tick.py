"""The first reading is published at start, not at the first aligned slot.

A new user must not stare at "Waiting for the first reading" for up to an interval: the sampler
reads and publishes once as soon as it starts, then keeps the aligned schedule. The first tick is
stored like any other, and shown by the API, well before the first aligned slot.
"""

from __future__ import annotations

import json
import time
import urllib.request

from tests.stack import Stack, wait_until

FIRST_TICK_WITHIN_S = 60.0


def far_slot_interval(now_s: float) -> tuple[float, float]:
    """Return (an interval of about a day, its first aligned slot after now_s) with that slot
    far enough away: a day (the next UTC midnight), or a second less where midnight is near."""
    for interval_s in (86_400.0, 86_399.0):
        next_slot_s = (now_s // interval_s + 1) * interval_s
        if next_slot_s - now_s > 2 * FIRST_TICK_WITHIN_S:
            return interval_s, next_slot_s
    raise AssertionError("unreachable: the two intervals' slots are hours apart")


def gpus(stack: Stack) -> list[dict]:
    with urllib.request.urlopen(stack.web_url + "/api/v1/gpus", timeout=10) as response:
        return json.loads(response.read())["gpus"]


def test_the_first_reading_is_stored_and_shown_long_before_the_first_aligned_slot(tmp_path):
    started_s = time.time()
    interval_s, next_slot_s = far_slot_interval(started_s)

    with Stack(tmp_path, {"PCW_INTERVAL_S": str(interval_s), "PCW_SIM_GPUS": "2"}) as stack:
        stack.wait_ticks(1, timeout_s=FIRST_TICK_WITHIN_S)
        stack.wait_web(FIRST_TICK_WITHIN_S)
        wait_until(
            lambda: len([g for g in gpus(stack) if g["latest"] is not None]) == 2,
            FIRST_TICK_WITHIN_S,
            "both GPUs' first reading in /api/v1/gpus",
            stack,
        )
        shown = gpus(stack)

    stored = stack.query("SELECT DISTINCT ts FROM readings")
    assert len(stored) == 1
    first_ts = stored[0][0]
    assert started_s <= first_ts < started_s + FIRST_TICK_WITHIN_S < next_slot_s
    assert all(gpu["latest"]["ts"] == first_ts and gpu["latest"]["error"] is None for gpu in shown)
    assert all(gpu["latest"]["mem_total_bytes"] for gpu in shown)
