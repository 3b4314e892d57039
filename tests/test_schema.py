"""The SQLite file: migrations, WAL, the documented `readings` view, and index use."""

from __future__ import annotations

import sqlite3

import pytest

from common.metrics import METRIC_NAMES
from common.schema import SCHEMA_VERSION, SchemaTooNewError, migrate, schema_version

READINGS_COLUMNS = ["host", "gpu_index", "gpu_uuid", "gpu_name", "ts", *METRIC_NAMES, "error"]


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "gpu_stats.db"


def open_db(path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


def schema_objects(conn: sqlite3.Connection) -> list[tuple]:
    return conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY name").fetchall()


def add_reading(conn: sqlite3.Connection, gpu_id: int, uuid: str, ts: float, util: int) -> None:
    conn.execute(
        "INSERT OR IGNORE INTO gpus (gpu_id, gpu_uuid, host, gpu_index, gpu_name, first_ts, "
        "last_ts) VALUES (?, ?, 'testhost', ?, 'NVIDIA H100', ?, ?)",
        (gpu_id, uuid, gpu_id - 1, ts, ts),
    )
    conn.execute(
        "INSERT INTO samples (gpu_id, ts, util_gpu_pct, power_w) VALUES (?, ?, ?, 123.5)",
        (gpu_id, ts, util),
    )


def test_an_empty_file_is_migrated_to_the_current_version_in_wal_mode(db_path):
    conn = open_db(db_path)

    assert migrate(conn) == SCHEMA_VERSION

    assert SCHEMA_VERSION >= 1
    assert schema_version(conn) == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()
    # WAL is a property of the file: a new connection finds it too
    other = open_db(db_path)
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert other.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    other.close()


def test_the_readings_view_has_exactly_the_documented_columns(db_path):
    conn = open_db(db_path)
    migrate(conn)

    columns = [row[1] for row in conn.execute("PRAGMA table_info(readings)")]

    assert columns == READINGS_COLUMNS
    assert conn.execute("SELECT type FROM sqlite_master WHERE name = 'readings'").fetchone() == (
        "view",
    )


def test_the_readings_view_gives_one_row_per_gpu_per_tick_with_nulls_kept(db_path):
    conn = open_db(db_path)
    migrate(conn)
    add_reading(conn, 1, "GPU-a", 1_700_000_000.0, 90)
    add_reading(conn, 2, "GPU-b", 1_700_000_000.0, 10)
    add_reading(conn, 1, "GPU-a", 1_700_000_060.0, 95)

    rows = conn.execute(
        "SELECT host, gpu_index, gpu_uuid, ts, util_gpu_pct, power_w, fan_pct, error "
        "FROM readings ORDER BY ts, gpu_uuid"
    ).fetchall()

    assert rows == [
        ("testhost", 0, "GPU-a", 1_700_000_000.0, 90, 123.5, None, None),
        ("testhost", 1, "GPU-b", 1_700_000_000.0, 10, 123.5, None, None),
        ("testhost", 0, "GPU-a", 1_700_000_060.0, 95, 123.5, None, None),
    ]


def test_migrating_twice_changes_nothing(db_path):
    conn = open_db(db_path)
    migrate(conn)
    add_reading(conn, 1, "GPU-a", 1_700_000_000.0, 90)
    before = schema_objects(conn)

    assert migrate(conn) == SCHEMA_VERSION
    conn.close()
    again = open_db(db_path)
    assert migrate(again) == SCHEMA_VERSION

    assert schema_objects(again) == before
    assert schema_version(again) == SCHEMA_VERSION
    assert again.execute("SELECT gpu_uuid, util_gpu_pct FROM readings").fetchall() == [
        ("GPU-a", 90)
    ]


def test_a_file_from_a_newer_version_is_refused_and_left_alone(db_path):
    conn = open_db(db_path)
    migrate(conn)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    before = schema_objects(conn)

    with pytest.raises(SchemaTooNewError, match=f"{SCHEMA_VERSION + 1}"):
        migrate(conn)

    assert schema_version(conn) == SCHEMA_VERSION + 1
    assert schema_objects(conn) == before


def plan(conn: sqlite3.Connection, sql: str, params: tuple) -> list[str]:
    return [row[3] for row in conn.execute(f"EXPLAIN QUERY PLAN {sql}", params)]


@pytest.fixture
def filled(db_path):
    """A migrated file with a few GPUs and readings, and the planner's statistics."""
    conn = open_db(db_path)
    migrate(conn)
    conn.execute("BEGIN")
    for gpu_id in range(1, 5):
        for k in range(200):
            add_reading(conn, gpu_id, f"GPU-{gpu_id}", 1_700_000_000.0 + 60 * k, k % 100)
    conn.execute("COMMIT")
    conn.execute("ANALYZE")
    yield conn
    conn.close()


RANGE_SQL = (
    f"SELECT ts, {', '.join(METRIC_NAMES)} FROM samples WHERE gpu_id = ? AND ts BETWEEN ? AND ?"
)
LATEST_SQL = f"SELECT ts, error, {', '.join(METRIC_NAMES)} FROM samples WHERE gpu_id = ? " + (
    "ORDER BY ts DESC LIMIT 1"
)


@pytest.mark.parametrize("analyzed", [False, True])
def test_one_gpus_range_is_a_primary_key_search(db_path, filled, analyzed):
    conn = filled if analyzed else open_db(db_path)
    if not analyzed:
        conn.execute("DROP TABLE IF EXISTS sqlite_stat1")

    steps = plan(conn, RANGE_SQL, (2, 1_700_000_000.0, 1_700_003_600.0))

    assert steps == ["SEARCH samples USING PRIMARY KEY (gpu_id=? AND ts>? AND ts<?)"]
    rows = conn.execute(RANGE_SQL, (2, 1_700_000_000.0, 1_700_003_600.0)).fetchall()
    assert [row[0] for row in rows] == [1_700_000_000.0 + 60 * k for k in range(61)]


def test_the_latest_reading_of_a_gpu_is_a_primary_key_search_without_sorting(filled):
    steps = plan(filled, LATEST_SQL, (3,))

    assert steps == ["SEARCH samples USING PRIMARY KEY (gpu_id=?)"]
    assert not any("TEMP B-TREE" in step for step in steps)
    assert filled.execute(LATEST_SQL, (3,)).fetchone()[0] == 1_700_000_000.0 + 60 * 199


def test_a_range_by_uuid_through_the_view_uses_the_keys(filled):
    sql = "SELECT * FROM readings WHERE gpu_uuid = ? AND ts BETWEEN ? AND ?"

    steps = plan(filled, sql, ("GPU-2", 1_700_000_000.0, 1_700_003_600.0))

    assert not any(step.startswith("SCAN") for step in steps), steps
    assert any("USING PRIMARY KEY (gpu_id=? AND ts>? AND ts<?)" in step for step in steps)
