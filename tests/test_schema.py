"""The SQLite file: migrations, WAL, the documented `readings` view, and index use."""

from __future__ import annotations

import hashlib
import importlib.util
import sqlite3
from types import ModuleType

import pytest

import common.metrics
import common.schema
from common.metrics import CORE_METRIC_NAMES, METRIC_NAMES, Metric
from common.schema import (
    MIGRATIONS,
    ROLLUP_LEVELS_S,
    SCHEMA_VERSION,
    SchemaTooNewError,
    _statements,
    migrate,
    rollup_table,
    schema_version,
)

READINGS_COLUMNS = ["host", "gpu_index", "gpu_uuid", "gpu_name", "ts", *CORE_METRIC_NAMES, "error"]


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


# -- frozen migrations ----------------------------------------------------------------------------

# sha256 of each released migration's SQL text. A released migration is never edited: files made
# by it exist. A change to the schema is a new migration, appended, with its hash added here.
RELEASED_MIGRATION_SHA256 = (
    "08c61ccee94033d80f88fca617840ec76126a54894e584f0560f2ba61297e091",
    "bb840a8f74974481ac9206b909058a715bb0f96b4af3d99a99967df1b1c67a33",
    "9f3003bbd9798544ef1cea842abe993e339139a3a8ef98254a8edc1ebbe16e71",
    "b092d913833b2824ecbd041cc3a6b205637a4a71d9a1b4e2757f4583897183e3",
    "49f69381e466464e5e9c2f0f20da24f25d28e3e936f625af09ac861cf6d6863c",
    "753653edc9b0a03337737b5ac6aaba91191ed2c1f5ef4eb8b64d090f587e77cc",
    "d71df0afeb09c1b4e4cd87a2a7a0cf1dcfb91152da2138d8a1efecd32dc030f0",
    "949dc83fceb4c9c9756c30c8a7abf8b438507ed2acf88cef696e50c8ada1fa61",
    "312c848477871800ae80a541d6750376e3c85f316a150272f1116d1025796071",
    "781105b2a3255fe5fe6429270a1577d6c2843f50a32c2b76cf3fc7b998c80b87",
    "af256010db9d8eefd86cc9dafce270c884c4ec4b88b2d4445b80adf668a3b2d1",  # 11: energy buckets
)


def test_every_released_migration_is_the_sql_it_was_released_with():
    hashes = [hashlib.sha256(script.encode()).hexdigest() for script in MIGRATIONS]

    assert hashes == list(RELEASED_MIGRATION_SHA256)


def _schema_module_with(monkeypatch, metrics: tuple[Metric, ...]) -> ModuleType:
    """Load common/schema.py afresh, under another name, while the metric list is `metrics`."""
    monkeypatch.setattr(common.metrics, "METRICS", metrics)
    monkeypatch.setattr(common.metrics, "METRIC_NAMES", tuple(m.name for m in metrics))
    spec = importlib.util.spec_from_file_location("schema_probe", common.schema.__file__)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_adding_a_metric_leaves_every_released_migration_unchanged(monkeypatch):
    more = (*common.metrics.METRICS, Metric("nvlink_rx_bytes", "INTEGER", "nvlink.rx"))

    probe = _schema_module_with(monkeypatch, more)

    assert probe.MIGRATIONS[: len(MIGRATIONS)] == MIGRATIONS


def _file_at_version(path, version: int) -> sqlite3.Connection:
    """Make a file as the release that stopped at `version` made it, then close and reopen it."""
    conn = open_db(path)
    conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    for step in range(version):
        for statement in _statements(MIGRATIONS[step]):
            conn.execute(statement)
    conn.execute(f"PRAGMA user_version = {version}")
    conn.close()
    return open_db(path)


@pytest.mark.parametrize("version", range(SCHEMA_VERSION))
def test_a_file_made_at_any_version_then_migrated_equals_a_new_file(tmp_path, version):
    fresh = open_db(tmp_path / "fresh.db")
    migrate(fresh)
    old = _file_at_version(tmp_path / "old.db", version)

    assert migrate(old) == SCHEMA_VERSION

    assert schema_objects(old) == schema_objects(fresh)
    assert schema_version(old) == schema_version(fresh) == SCHEMA_VERSION


def _columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in conn.execute(f"PRAGMA table_info({table})")]


def test_every_metric_has_its_column_in_the_samples_and_every_rollup(db_path):
    conn = open_db(db_path)
    migrate(conn)

    assert set(METRIC_NAMES) <= set(_columns(conn, "samples"))
    for level_s in ROLLUP_LEVELS_S:
        columns = set(_columns(conn, rollup_table(level_s)))
        for name in METRIC_NAMES:
            assert {f"{name}_sum", f"{name}_n", f"{name}_max"} <= columns, (level_s, name)
