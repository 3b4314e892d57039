"""A replayed (older) tick is placed among its process's spans without reading the GPU's history."""

from __future__ import annotations

from pathlib import Path

from services.writer.store import Store
from tests.test_process_storage import at, proc, tick


def _steps_of_one_replayed_tick(path: Path, ticks: int) -> int:
    """Write ticks whose process changes memory each tick (a span each), all but the one before
    the last; count the SQLite VM steps of writing that one late."""
    missing = ticks - 2
    store = Store(path)
    store.write([tick(at(k), [proc(1, 1 + k)]) for k in range(ticks) if k != missing])
    conn = store._connection()
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 1)
    store.write([tick(at(missing), [proc(1, 1 + missing)])])
    conn.set_progress_handler(None, 1)
    rows = conn.execute(
        "SELECT start_ts, end_ts FROM proc_spans WHERE proc_id != 0 AND start_ts = ?",
        (at(missing),),
    ).fetchall()
    store.close()
    assert rows == [(at(missing), at(missing))]  # the late tick got its span
    return steps[0]


def test_a_replayed_tick_does_not_read_the_gpus_whole_span_history(tmp_path):
    short = _steps_of_one_replayed_tick(tmp_path / "short", 20)
    long = _steps_of_one_replayed_tick(tmp_path / "long", 2000)  # 2000 spans before it
    assert long < 2 * short
