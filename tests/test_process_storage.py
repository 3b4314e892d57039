"""Process storage in the SQLite file: spans, replays, restarts, purge, views and migration."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from common.messages import GpuProcess, GpuReading, Tick
from common.schema import MIGRATIONS, SCHEMA_VERSION, _statements, migrate
from services.writer.store import Store, file_bytes
from tests.bench.generate import fast_host_ticks

T0 = 1_700_000_040.0  # a multiple of 60
GIB = 1 << 30


def proc(pid: int, mem_gib: float | None = 1, **fields: object) -> GpuProcess:
    values: dict[str, object] = {
        "pid": pid,
        "used_mem_bytes": None if mem_gib is None else int(mem_gib * GIB),
        "visible": True,
        "name": f"python{pid}",
        "cmdline": f"python train.py --run {pid}",
        "user": "alice",
    }
    values.update(fields)
    return GpuProcess(**values)


def tick(ts: float, *per_gpu: list[GpuProcess] | None, interval_s: float = 60.0) -> Tick:
    gpus = [
        GpuReading(index=i, uuid=f"GPU-{i}", name="NVIDIA H100", processes=procs)
        for i, procs in enumerate(per_gpu)
    ]
    return Tick(host="h", sampler_id="s", seq=int(ts), ts=ts, interval_s=interval_s, gpus=gpus)


def spans(path: Path) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT gpu_index, pid, kind, start_ts, end_ts, used_mem_bytes FROM processes"
            " ORDER BY gpu_index, pid, start_ts"
        ).fetchall()
    finally:
        conn.close()


def at(k: int) -> float:
    return T0 + 60 * k


def test_a_long_running_process_is_one_row_and_a_memory_change_starts_another(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(at(k), [proc(7, 1)]) for k in range(10)])
    store.write([tick(at(k), [proc(7, 2)]) for k in range(10, 15)])
    store.close()
    assert spans(path) == [
        (0, 7, "compute", at(0), at(9), GIB),
        (0, 7, "compute", at(10), at(14), 2 * GIB),
    ]


def test_a_process_that_leaves_and_comes_back_gets_a_new_span(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(at(0), [proc(7)]), tick(at(1), []), tick(at(2), [proc(7)])])
    store.close()
    assert spans(path) == [
        (0, 7, "compute", at(0), at(0), GIB),
        (0, 7, "compute", at(2), at(2), GIB),
    ]


def test_an_unknown_list_stores_nothing_and_breaks_the_span(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(at(0), [proc(7)]), tick(at(1), None), tick(at(2), [proc(7)])])
    store.close()
    assert spans(path) == [
        (0, 7, "compute", at(0), at(0), GIB),
        (0, 7, "compute", at(2), at(2), GIB),
    ]


def test_replayed_ticks_are_no_ops_inside_a_span_and_join_spans_across_a_filled_gap(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(at(k), [proc(7)]) for k in (0, 1, 2, 4, 5)])
    assert spans(path) == [
        (0, 7, "compute", at(0), at(2), GIB),
        (0, 7, "compute", at(4), at(5), GIB),
    ]
    store.write([tick(at(1), [proc(7)]), tick(at(5), [proc(7)])])  # already stored
    assert len(spans(path)) == 2
    store.close()
    store = Store(path)  # a restart: the open spans are rebuilt from the file
    store.write([tick(at(3), [proc(7)])])  # the missed tick arrives
    store.write([tick(at(6), [proc(7)])])
    store.close()
    assert spans(path) == [(0, 7, "compute", at(0), at(6), GIB)]


def test_a_restarted_writer_extends_the_spans_it_had_open(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(at(k), [proc(7)], [proc(8, 3), proc(9, None)]) for k in range(3)])
    store.close()
    store = Store(path)
    store.write([tick(at(k), [proc(7)], [proc(8, 3), proc(9, None)]) for k in range(3, 6)])
    store.close()
    assert spans(path) == [
        (0, 7, "compute", at(0), at(5), GIB),
        (1, 8, "compute", at(0), at(5), 3 * GIB),
        (1, 9, "compute", at(0), at(5), None),
    ]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM proc_identities").fetchone() == (3,)


def test_hidden_processes_are_stored_as_such(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    hidden = GpuProcess(pid=4242, used_mem_bytes=GIB)
    store.write([tick(at(0), [hidden])])
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT pid, visible, name, user FROM processes").fetchall() == [
        (4242, 0, None, None)
    ]


def test_purge_drops_old_spans_and_identities_no_span_uses(tmp_path):
    path = tmp_path / "db"
    store = Store(path)
    store.write([tick(at(k), [proc(1)]) for k in range(3)])
    store.write([tick(at(k), [proc(2)]) for k in range(3, 6)])
    store.purge(at(3))
    store.write([tick(at(6), [proc(2)])])  # still extends after the purge
    store.close()
    assert spans(path) == [(0, 2, "compute", at(3), at(6), GIB)]
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT pid FROM proc_identities").fetchall() == [(2,)]


def test_the_energy_view_gives_each_readings_energy_and_its_source(tmp_path):
    path = tmp_path / "db"
    store = Store(path)

    def energy_tick(k: int, energy_j: float | None, power_w: float | None) -> Tick:
        reading = GpuReading(index=0, uuid="GPU-0", name="g", energy_j=energy_j, power_w=power_w)
        return Tick(host="h", sampler_id="s", seq=k, ts=at(k), interval_s=60.0, gpus=[reading])

    store.write(
        [
            energy_tick(0, 1000.0, 100.0),
            energy_tick(1, 7000.0, 100.0),  # +6000 J
            energy_tick(2, 500.0, 100.0),  # a reset: 500 J since
            energy_tick(3, None, 200.0),  # no counter: (100 + 200) / 2 * 60 = 9000 J
            energy_tick(6, None, 200.0),  # three intervals later: a gap, no energy
        ]
    )
    store.close()
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT ts, delta_j, source FROM energy ORDER BY ts").fetchall()
    assert rows == [
        (at(0), None, None),
        (at(1), 6000.0, "counter"),
        (at(2), 500.0, "counter"),
        (at(3), 9000.0, "power"),
        (at(6), None, None),
    ]
    assert conn.execute("SELECT host, gpu_uuid, energy_j, power_w FROM energy LIMIT 1").fetchone()


def _v3_file(path: Path) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    for script in MIGRATIONS[:3]:
        for statement in _statements(script):
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    conn.execute(
        "INSERT INTO gpus (gpu_id, gpu_uuid, host, gpu_index, gpu_name, first_ts, last_ts,"
        " interval_s) VALUES (1, 'GPU-0', 'h', 0, 'NVIDIA H100', ?, ?, 60)",
        (at(0), at(1)),
    )
    conn.executemany(
        "INSERT INTO samples (gpu_id, ts, util_gpu_pct, energy_j) VALUES (1, ?, 50, ?)",
        [(at(0), 100.0), (at(1), 200.0)],
    )
    conn.close()


def test_a_v3_file_with_data_migrates_and_keeps_its_readings_view(tmp_path):
    path = tmp_path / "db"
    _v3_file(path)
    conn = sqlite3.connect(path, isolation_level=None)
    view_sql = "SELECT sql FROM sqlite_master WHERE name = 'readings'"
    readings_before = conn.execute("SELECT * FROM readings ORDER BY ts").fetchall()
    columns_before = [d[0] for d in conn.execute("SELECT * FROM readings").description]
    sql_before = conn.execute(view_sql).fetchone()
    assert migrate(conn) == SCHEMA_VERSION
    assert conn.execute(view_sql).fetchone() == sql_before
    assert conn.execute("SELECT * FROM readings ORDER BY ts").fetchall() == readings_before
    assert [d[0] for d in conn.execute("SELECT * FROM readings").description] == columns_before
    assert conn.execute("SELECT delta_j FROM energy ORDER BY ts").fetchall() == [(None,), (100.0,)]
    conn.close()
    store = Store(path)
    store.write([tick(at(2), [proc(7)])])
    store.close()
    assert spans(path) == [(0, 7, "compute", at(2), at(2), GIB)]


def _wobbled_gib(base_gib: float, step: int, jitter_mib: int) -> float:
    """Return base_gib moved by a value from -jitter_mib to +jitter_mib MiB that changes by step."""
    return base_gib + (step % (2 * jitter_mib + 1) - jitter_mib) / 1024


def _day_file(path: Path, with_processes: bool, jitter_mib: int = 0) -> int:
    """Write a day of 1-minute ticks of one host with 8 GPUs, one long-running process on each.

    jitter_mib: each tick, each process's memory moves by up to that many MiB around 20 GiB, as a
    caching allocator's does.
    """
    store = Store(path)
    batch = []
    for day_tick in fast_host_ticks("h", 8, T0, 1440, 60.0):
        if with_processes:
            gpus = [
                msgspec.structs.replace(
                    gpu,
                    processes=[
                        proc(
                            1000 + gpu.index,
                            _wobbled_gib(20, day_tick.seq * 7 + gpu.index, jitter_mib),
                            cmdline="python -m torch.distributed.run --nproc 8 train.py "
                            "--config configs/llama-7b.yaml --batch 64",
                            container_id="f" * 64,
                            container_name="trainer",
                        )
                    ],
                )
                for gpu in day_tick.gpus
            ]
            day_tick = msgspec.structs.replace(day_tick, gpus=gpus)
        batch.append(day_tick)
        if len(batch) == 60:  # the writer commits about this often at 1-minute ticks
            store.write(batch)
            batch = []
    store.write(batch)
    store.close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("VACUUM")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return file_bytes(path)


@pytest.mark.parametrize("jitter_mib", [0, 30])
def test_a_day_of_eight_long_running_processes_adds_under_a_fifth_to_the_file(tmp_path, jitter_mib):
    readings_only = _day_file(tmp_path / "readings.db", with_processes=False)
    with_processes = _day_file(tmp_path / "processes.db", True, jitter_mib)
    growth = with_processes / readings_only - 1
    print(
        f"memory jitter {jitter_mib} MiB: readings alone {readings_only:,} bytes,"
        f" with processes {with_processes:,} bytes:"
        f" +{100 * growth:.2f}%"
    )
    assert growth < 0.20


def test_jobs_coming_and_going_leave_the_writer_only_the_running_ones_in_memory(tmp_path):
    """A host that runs job after job for months: the writer remembers the running ones only."""
    path = tmp_path / "db"
    store = Store(path)
    for k in range(200):  # a new short job every tick, beside one that runs throughout
        store.write([tick(at(k), [proc(1), proc(1000 + k)])])
    assert len(store._proc_ids) == 2  # the long job and the newest one, not 201 identities
    store.write([tick(at(200), [proc(1), proc(1199)])])  # still running: its identity again
    store.close()
    rows = spans(path)
    assert [row for row in rows if row[1] == 1] == [(0, 1, "compute", at(0), at(200), GIB)]
    assert [row for row in rows if row[1] == 1199] == [(0, 1199, "compute", at(199), at(200), GIB)]
    assert len({row[1] for row in rows}) == 201
