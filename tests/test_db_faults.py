"""A full disk under the writer: readings are held, /healthz says degraded, nothing is lost."""

from __future__ import annotations

import json
import resource

from common.status import read_status
from tests.stack import Stack, healthz, missing_and_duplicated, wait_until

INTERVAL_S = 0.2


def _degraded(stack: Stack) -> bool:
    status = read_status(stack.db_path)
    return status is not None and status.state == "degraded" and status.buffered_ticks > 5


def test_disk_full_holds_readings_reports_degraded_and_recovers(tmp_path):
    env = {"PCW_SIM_GPUS": "4", "PCW_INTERVAL_S": str(INTERVAL_S)}
    with Stack(tmp_path, env, supervised=False) as stack:
        stack.wait_ticks(5)
        stack.wait_web()
        writer_pid = stack.processes["writer"].pid
        # a file-size limit makes every write past 4 KiB fail with EFBIG, so SQLite says the
        # disk is full, while the small status file still fits. A real limit on a real
        # process, lifted again below.
        resource.prlimit(writer_pid, resource.RLIMIT_FSIZE, (4096, resource.RLIM_INFINITY))
        wait_until(lambda: _degraded(stack), 30, "the writer to report degraded", stack)
        code, health = healthz(stack)
        assert code == 503, health
        assert "degraded" in json.dumps(health).lower(), health
        held = read_status(stack.db_path).buffered_ticks
        # still receiving, still holding: the next status the writer reports holds more
        wait_until(
            lambda: read_status(stack.db_path).buffered_ticks > held,
            60,
            "the writer to report more held ticks",
            stack,
        )

        unlimited = (resource.RLIM_INFINITY, resource.RLIM_INFINITY)
        resource.prlimit(writer_pid, resource.RLIMIT_FSIZE, unlimited)

        def recovered() -> bool:
            status = read_status(stack.db_path)
            return status is not None and status.state == "ok" and status.buffered_ticks == 0

        wait_until(recovered, 60, "the writer to store what it held", stack)
        wait_until(lambda: healthz(stack)[0] == 200, 30, "/healthz to say ok again", stack)
        stack.terminate()
        logs = stack.logs()

    # EFBIG reads as an I/O error to SQLite (ENOSPC, a really full disk, as "disk is full")
    assert "cannot store readings: disk I/O error" in logs
    # every GPU has a reading in every slot from the first to the last, each stored once
    _expected, missing, duplicated = missing_and_duplicated(stack, INTERVAL_S)
    assert (missing, duplicated) == (0, 0)
    assert len({uuid for (uuid,) in stack.query("SELECT DISTINCT gpu_uuid FROM readings")}) == 4
