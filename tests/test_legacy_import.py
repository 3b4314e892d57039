"""The original pyCudaWatch's history, found in the same file, is imported once by the writer.

A gpu_stats.db with the original's table (`metrics`: GPU 0, local ISO times, memory in bytes)
gets the real writer, sampler and web started on it: its rows appear as readings of this host's
GPU 0 in the `readings` view and /api/v1/history, at the UTC times the local times meant (in the
processes' TZ); the table is kept; a second start imports nothing again.
"""

from __future__ import annotations

import datetime
import json
import sqlite3
import urllib.request
import zoneinfo
from pathlib import Path

from common.messages import GpuReading, Tick
from common.schema import rollup_levels_for
from services.writer.legacy import LegacyImport
from services.writer.store import Store
from tests.stack import Stack, wait_until
from tests.test_boundaries import assert_rolled_as, naive_buckets

TZ = "Asia/Kolkata"  # UTC+05:30 all year: local time is never UTC by accident
LEGACY_ROWS = 90
GIB = 1 << 30


def legacy_rows(now_s: float) -> list[tuple[float, str, int, int, int, int]]:
    """Return (epoch, local ISO ts, gpu_util, mem_used, mem_total, temp) for each old row.

    A reading a minute, ending two hours ago, with microseconds as datetime.now() writes them.
    """
    zone = zoneinfo.ZoneInfo(TZ)
    first_s = (now_s // 60) * 60 - 2 * 3600 - (LEGACY_ROWS - 1) * 60 + 0.25
    rows = []
    for k in range(LEGACY_ROWS):
        epoch_s = first_s + 60 * k
        local = datetime.datetime.fromtimestamp(epoch_s, zone).replace(tzinfo=None)
        rows.append((epoch_s, local.isoformat(), k % 101, (k % 7) * GIB, 80 * GIB, 40 + k % 30))
    return rows


def make_legacy_file(path: Path, rows: list[tuple]) -> None:
    """Write the file as the original's init_db.py and collector did."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE IF NOT EXISTS metrics (id INTEGER PRIMARY KEY AUTOINCREMENT,"
        " ts TEXT NOT NULL, gpu_util INTEGER, mem_used INTEGER, mem_total INTEGER, temp INTEGER)"
    )
    conn.executemany(
        "INSERT INTO metrics (ts, gpu_util, mem_used, mem_total, temp) VALUES (?, ?, ?, ?, ?)",
        [row[1:] for row in rows],
    )
    conn.commit()
    conn.close()


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def imported_readings(stack: Stack, until_s: float) -> list[tuple]:
    """Return this host's GPU 0 readings up to until_s ([] before the writer made the view)."""
    try:
        return stack.query(
            "SELECT ts, util_gpu_pct, mem_used_bytes, mem_total_bytes, temp_c, power_w"
            " FROM readings WHERE host = 'testhost' AND gpu_index = 0 AND ts <= ? ORDER BY ts",
            (until_s,),
        )
    except sqlite3.OperationalError:  # no such table yet
        return []


def test_the_original_history_is_imported_once_and_shown(tmp_path):
    now_s = datetime.datetime.now(datetime.UTC).timestamp()
    rows = legacy_rows(now_s)
    last_s = rows[-1][0]
    env = {"TZ": TZ, "PCW_SIM_GPUS": "2"}
    db_path = tmp_path / "db" / "gpu_stats.db"  # where Stack puts it
    make_legacy_file(db_path, rows)
    with Stack(tmp_path, env, supervised=False) as stack:
        assert stack.db_path == db_path
        wait_until(
            lambda: len(imported_readings(stack, last_s)) == LEGACY_ROWS, 60, "the import", stack
        )
        stack.wait_web()
        expected = [(ts, util, used, total, temp, None) for ts, _, util, used, total, temp in rows]
        assert imported_readings(stack, last_s) == expected
        (uuid,) = stack.query(
            "SELECT gpu_uuid FROM gpus WHERE host = 'testhost' AND gpu_index = 0"
        )[0]
        # the history API, over the hour of old rows, in 1-minute buckets (a rollup level)
        from_s, to_s = (rows[0][0] // 60) * 60, (last_s // 60 + 1) * 60
        body = get_json(
            f"{stack.web_url}/api/v1/history?gpu={uuid}&from={from_s}&to={to_s}&points=100"
        )
        assert body["step_s"] == 60
        (series,) = body["series"]
        counted = [k for k, count in enumerate(series["count"]) if count]
        assert [series["count"][k] for k in counted] == [1] * LEGACY_ROWS
        assert [series["mean"]["util_gpu_pct"][k] for k in counted] == [row[2] for row in rows]
        assert [series["mean"]["temp_c"][k] for k in counted] == [row[5] for row in rows]
    first_logs = stack.log_path.read_text(errors="replace")
    assert first_logs.count("imported 90 readings of the original pyCudaWatch") == 1, first_logs
    conn = sqlite3.connect(stack.db_path)
    assert conn.execute("SELECT count(*) FROM metrics").fetchone() == (LEGACY_ROWS,)  # kept
    conn.close()

    # a second start: new ticks are stored, nothing is imported again
    with Stack(tmp_path, env, supervised=False, programs=("writer", "sampler")) as again:
        before = again.stored_ticks()
        wait_until(lambda: again.stored_ticks() > before, 60, "new ticks", again)
        stored = again.query(
            "SELECT rows_imported, gpu_uuid FROM legacy_imports WHERE source_table = 'metrics'"
        )
        assert stored == [(LEGACY_ROWS, uuid)]
        assert len(imported_readings(again, last_s)) == LEGACY_ROWS
    logs = again.log_path.read_text(errors="replace")
    assert logs.count("imported 90 readings") == 1, logs  # the first start's line only


NOW_S = 1_790_000_000.0
DAY_S = 86400.0


def _tick(host: str, ts: float) -> Tick:
    gpus = [GpuReading(index=i, uuid=f"GPU-{host}-{i}", name="H100") for i in range(2)]
    return Tick(host=host, sampler_id=host, seq=int(ts), ts=ts, interval_s=60.0, gpus=gpus)


def test_only_rows_within_the_retention_with_a_readable_time_are_imported(tmp_path):
    path = tmp_path / "gpu_stats.db"
    path.parent.mkdir(exist_ok=True)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE metrics (id INTEGER PRIMARY KEY AUTOINCREMENT, ts TEXT NOT NULL,"
        " gpu_util INTEGER, mem_used INTEGER, mem_total INTEGER, temp INTEGER)"
    )
    utc = datetime.UTC
    conn.executemany(
        "INSERT INTO metrics (ts, gpu_util, mem_used, mem_total, temp) VALUES (?, 50, 1, 2, 60)",
        [
            (datetime.datetime.fromtimestamp(NOW_S - 31 * DAY_S, utc).isoformat(),),  # too old
            ("yesterday",),  # unreadable
            (datetime.datetime.fromtimestamp(NOW_S - DAY_S, utc).isoformat(),),  # with an offset
            (datetime.datetime.fromtimestamp(NOW_S - 3600).isoformat(),),  # local, naive
        ],
    )
    conn.commit()
    conn.close()
    store = Store(path, legacy=LegacyImport("here", 30 * DAY_S, wall=lambda: NOW_S))

    store.write([_tick("elsewhere", NOW_S)])  # another host's GPU 0: not the original's
    assert store.legacy.done is False
    store.write([_tick("here", NOW_S)])
    store.write([_tick("here", NOW_S + 60)])
    store.close()

    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT gpu_uuid, ts, util_gpu_pct, temp_c FROM readings WHERE ts < ? ORDER BY ts",
        (NOW_S,),
    ).fetchall()
    assert rows == [("GPU-here-0", NOW_S - DAY_S, 50, 60), ("GPU-here-0", NOW_S - 3600, 50, 60)]
    assert conn.execute("SELECT rows_imported, rows_left_out FROM legacy_imports").fetchall() == [
        (2, 2)
    ]
    (first_ts,) = conn.execute("SELECT first_ts FROM gpus WHERE gpu_uuid = 'GPU-here-0'").fetchone()
    assert first_ts == NOW_S - DAY_S
    conn.close()


def test_every_rollup_level_of_an_imported_history_matches_a_plain_group_by(tmp_path):
    path = tmp_path / "gpu_stats.db"
    utc = datetime.UTC
    first_s = NOW_S - 6 * 3600 + 7.5  # every 17 s over 5 hours: readings on no bucket's edge
    rows = [
        (0.0, datetime.datetime.fromtimestamp(first_s + 17 * k, utc).isoformat(), k % 101, k, 9, 50)
        for k in range(5 * 3600 // 17)
    ]
    make_legacy_file(path, rows)
    store = Store(path, legacy=LegacyImport("here", 30 * DAY_S, wall=lambda: NOW_S))

    store.write([_tick("here", NOW_S)])
    store.close()

    conn = sqlite3.connect(path)
    assert conn.execute("SELECT rows_imported FROM legacy_imports").fetchone() == (len(rows),)
    for level_s in rollup_levels_for(60.0):  # the tick's interval: 60 s itself is not kept
        assert_rolled_as(conn, level_s, naive_buckets(conn, level_s))
    conn.close()
