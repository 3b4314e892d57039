"""The SQLite schema: tables, the documented `readings` view, and forward migrations.

Layout, chosen for the two queries the dashboard makes all day:

- `gpus`: one row per GPU ever seen, keyed by a small integer `gpu_id`; its UUID is unique.
- `samples`: one row per GPU per tick, a WITHOUT ROWID table keyed on (gpu_id, ts). A range of
  one GPU is one key range scan; the latest reading of a GPU is one key look-up from the end.
  Storing the same reading twice (a replay) is a no-op under INSERT OR IGNORE.
- `readings`: the stable view for people who query the file (SPEC), one row per GPU per tick.

`PRAGMA user_version` holds the number of migrations applied. Times are UTC epoch seconds.
"""

from __future__ import annotations

import sqlite3

from common.metrics import METRIC_NAMES, METRICS

_METRIC_COLUMNS = ",\n    ".join(f"{metric.name} {metric.sql_type}" for metric in METRICS)
_VIEW_METRICS = ", ".join(f"s.{name}" for name in METRIC_NAMES)

_V1 = f"""
CREATE TABLE gpus (
    gpu_id INTEGER PRIMARY KEY,
    gpu_uuid TEXT NOT NULL UNIQUE,
    host TEXT NOT NULL,
    gpu_index INTEGER NOT NULL,
    gpu_name TEXT NOT NULL,
    pci_bus_id TEXT,
    driver_version TEXT,
    first_ts REAL NOT NULL,
    last_ts REAL NOT NULL
);
CREATE TABLE samples (
    gpu_id INTEGER NOT NULL REFERENCES gpus (gpu_id),
    ts REAL NOT NULL,
    error TEXT,
    {_METRIC_COLUMNS},
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;
CREATE VIEW readings AS
SELECT g.host, g.gpu_index, g.gpu_uuid, g.gpu_name, s.ts, {_VIEW_METRICS}, s.error
FROM samples AS s JOIN gpus AS g ON g.gpu_id = s.gpu_id;
"""

# Where the writer has stored each sampler run up to: it asks for what follows after a restart.
_V2 = """
CREATE TABLE positions (
    sampler_id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    seq INTEGER NOT NULL,
    updated_ts REAL NOT NULL
);
"""

# Rollups: per GPU and aligned bucket of `level` seconds, the row count and, per metric, the sum,
# count of non-null values and maximum, so that a mean over any union of buckets is exact.
ROLLUP_LEVELS_S: tuple[int, ...] = (60, 600, 1800, 3600, 7200)


def rollup_levels_for(interval_s: float) -> tuple[int, ...]:
    """Return the rollup levels (seconds) kept for a GPU sampled every interval_s.

    A level no coarser than the sampling would hold one reading per bucket: it is not kept.
    """
    return tuple(level_s for level_s in ROLLUP_LEVELS_S if level_s > interval_s)


def rollup_table(level_s: int) -> str:
    """Return the table name of a rollup level."""
    return f"rollup_{level_s}"


_ROLLUP_COLUMNS = ",\n    ".join(
    f"{m.name}_sum {m.sql_type}, {m.name}_n INTEGER NOT NULL, {m.name}_max {m.sql_type}"
    for m in METRICS
)
_V3 = "ALTER TABLE gpus ADD COLUMN interval_s REAL;\n" + "".join(
    f"""
CREATE TABLE {rollup_table(level_s)} (
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    {_ROLLUP_COLUMNS},
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;
"""
    for level_s in ROLLUP_LEVELS_S
)

# Each entry moves the file from user_version == its position to position + 1. Append only.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3)
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNewError(RuntimeError):
    """The file was written by a newer pyCudaWatch than this one."""


def schema_version(conn: sqlite3.Connection) -> int:
    """Return the file's PRAGMA user_version."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the file forward to SCHEMA_VERSION, one transaction per step; return the version.

    The connection must be in autocommit mode (isolation_level=None). A new file is also set to
    WAL and incremental auto-vacuum, which must happen before its first table exists.
    """
    version = schema_version(conn)
    if version > SCHEMA_VERSION:
        raise SchemaTooNewError(f"database schema {version} is newer than {SCHEMA_VERSION}")
    if version == 0:
        conn.execute("PRAGMA auto_vacuum = INCREMENTAL")
    conn.execute("PRAGMA journal_mode = WAL")
    for step in range(version, SCHEMA_VERSION):
        conn.execute("BEGIN IMMEDIATE")
        try:
            # executescript would COMMIT first; run the statements one by one inside BEGIN.
            for statement in _statements(MIGRATIONS[step]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {step + 1}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
    return SCHEMA_VERSION


def _statements(script: str) -> list[str]:
    """Split a migration script into complete statements."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]
