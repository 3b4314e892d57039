"""The real pipeline under the real supervisord: every tick published is stored, none missing."""

from __future__ import annotations

import signal
import threading

from common.messages import Tick
from tests.stack import Stack, listen_ticks, wait_until


def test_supervised_stack_stores_every_tick_and_the_last_one(tmp_path):
    seen: list[Tick] = []
    stop = threading.Event()
    with Stack(tmp_path, {"PCW_SIM_GPUS": "3", "PCW_INTERVAL_S": "1"}) as stack:
        listener = threading.Thread(
            target=listen_ticks, args=(stack.env["PCW_PUB_ENDPOINT"], seen, stop), daemon=True
        )
        listener.start()
        stack.wait_ticks(2)
        wait_until(lambda: len(seen) >= 9, 60, "nine ticks published", stack)
        supervisord = stack.processes.pop("supervisord")
        supervisord.send_signal(signal.SIGTERM)
        assert supervisord.wait(60) == 0
        stop.set()
        listener.join(5)
        logs = stack.logs()

    rows = stack.query("SELECT gpu_uuid, ts FROM readings")
    assert len(seen) >= 8, logs
    uuids = {gpu.uuid for gpu in seen[-1].gpus}
    assert len(uuids) == 3
    stored_ts = sorted({ts for _, ts in rows})
    # the first tick is read at start, off the schedule; then every GPU at every 1 s slot up to
    # the last stored, no gaps
    first_ts, *aligned_ts = stored_ts
    assert first_ts < aligned_ts[0] <= first_ts + 1
    assert aligned_ts == [aligned_ts[0] + i for i in range(len(aligned_ts))]
    assert set(rows) == {(uuid, ts) for uuid in uuids for ts in stored_ts}
    # every tick our own subscriber saw, including the last one published before the stop
    assert {tick.ts for tick in seen} <= set(stored_ts)
    assert stored_ts[-1] == seen[-1].ts
    for name in ("sampler", "writer"):
        assert f"stopped: {name} (exit status 0)" in logs
