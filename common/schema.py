"""The SQLite schema: tables, the documented `readings` view, and forward migrations.

Layout, chosen for the two queries the dashboard makes all day:

- `gpus`: one row per GPU ever seen, keyed by a small integer `gpu_id`; its UUID is unique.
- `samples`: one row per GPU per tick, a WITHOUT ROWID table keyed on (gpu_id, ts). A range of
  one GPU is one key range scan; the latest reading of a GPU is one key look-up from the end.
  Storing the same reading twice (a replay) is a no-op under INSERT OR IGNORE.
- `readings`: the stable view for people who query the file, one row per GPU per tick.
- `proc_identities` and `proc_spans` (version 4): processes, one span row per process per GPU
  per unbroken run of ticks at one memory size; the documented views `processes` (one row per
  span) and `energy` (one row per GPU per reading, with the energy since the previous one;
  version 5 made error ticks add nothing).
- `legacy_imports` (version 6): the original pyCudaWatch's tables imported, each once.
- `xid_events` (version 7): each GPU's critical XID errors; the documented view `xids`.
- version 8: the health metrics' columns and the documented view `health_readings`;
  `health_states`, a GPU's health counters and states each time they change, and the view
  `health`.

`PRAGMA user_version` holds the number of migrations applied. Times are UTC epoch seconds.
Each migration is frozen SQL text: a change is a new migration, never an edit.
"""

from __future__ import annotations

import math
import sqlite3

# The migrations, frozen: each is the literal SQL that a released version ran, and is never
# edited (tests/test_schema.py pins each one's hash). A new column or view is a new migration
# appended below, so that files made before it get it too. The metric list (common.metrics) is
# what the code reads and writes; a test checks that the schema holds a column for each metric.

_V1 = """
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
    util_gpu_pct INTEGER,
    util_mem_pct INTEGER,
    mem_used_bytes INTEGER,
    mem_total_bytes INTEGER,
    temp_c INTEGER,
    power_w REAL,
    power_limit_w REAL,
    energy_j REAL,
    fan_pct INTEGER,
    sm_clock_mhz INTEGER,
    mem_clock_mhz INTEGER,
    pstate INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;
CREATE VIEW readings AS
SELECT g.host, g.gpu_index, g.gpu_uuid, g.gpu_name, s.ts, s.util_gpu_pct, s.util_mem_pct, s.mem_used_bytes, s.mem_total_bytes, s.temp_c, s.power_w, s.power_limit_w, s.energy_j, s.fan_pct, s.sm_clock_mhz, s.mem_clock_mhz, s.pstate, s.error
FROM samples AS s JOIN gpus AS g ON g.gpu_id = s.gpu_id;
"""  # noqa: E501

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
ROLLUP_LEVELS_S: tuple[int, ...] = (60, 300, 600, 1800, 3600, 7200)
# Levels kept only for GPUs sampled at most this often (seconds): the 300 s level (version 10)
# makes a 24-hour chart of a fast GPU one key look-up per bucket, for ~5 B a reading at 10 s;
# at a slower interval the 60 s level already has few rows per 300 s bucket.
ROLLUP_MAX_INTERVAL_S: dict[int, float] = {300: 30.0}


def rollup_levels_for(interval_s: float) -> tuple[int, ...]:
    """Return the rollup levels (seconds) kept for a GPU sampled every interval_s.

    A level no coarser than the sampling would hold one reading per bucket: it is not kept.
    Each level kept tiles the next one kept, so it is refreshed from the one below it.
    """
    return tuple(
        level_s
        for level_s in ROLLUP_LEVELS_S
        if level_s > interval_s and interval_s <= ROLLUP_MAX_INTERVAL_S.get(level_s, level_s)
    )


def rollup_table(level_s: int) -> str:
    """Return the table name of a rollup level."""
    return f"rollup_{level_s}"


def bucket_start(ts: float, level_s: int) -> float:
    """Return the start of the level's bucket holding ts: start <= ts < start + level_s exactly
    as SQLite compares them (ts / level_s may round up to the next whole number)."""
    start = float(math.floor(ts / level_s) * level_s)
    return start - level_s if start > ts else start


# per metric: <name>_sum, <name>_n (non-null count), <name>_max; n is the row count.
_V3 = """ALTER TABLE gpus ADD COLUMN interval_s REAL;

CREATE TABLE rollup_60 (
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    util_gpu_pct_sum INTEGER, util_gpu_pct_n INTEGER NOT NULL, util_gpu_pct_max INTEGER,
    util_mem_pct_sum INTEGER, util_mem_pct_n INTEGER NOT NULL, util_mem_pct_max INTEGER,
    mem_used_bytes_sum INTEGER, mem_used_bytes_n INTEGER NOT NULL, mem_used_bytes_max INTEGER,
    mem_total_bytes_sum INTEGER, mem_total_bytes_n INTEGER NOT NULL, mem_total_bytes_max INTEGER,
    temp_c_sum INTEGER, temp_c_n INTEGER NOT NULL, temp_c_max INTEGER,
    power_w_sum REAL, power_w_n INTEGER NOT NULL, power_w_max REAL,
    power_limit_w_sum REAL, power_limit_w_n INTEGER NOT NULL, power_limit_w_max REAL,
    energy_j_sum REAL, energy_j_n INTEGER NOT NULL, energy_j_max REAL,
    fan_pct_sum INTEGER, fan_pct_n INTEGER NOT NULL, fan_pct_max INTEGER,
    sm_clock_mhz_sum INTEGER, sm_clock_mhz_n INTEGER NOT NULL, sm_clock_mhz_max INTEGER,
    mem_clock_mhz_sum INTEGER, mem_clock_mhz_n INTEGER NOT NULL, mem_clock_mhz_max INTEGER,
    pstate_sum INTEGER, pstate_n INTEGER NOT NULL, pstate_max INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;

CREATE TABLE rollup_600 (
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    util_gpu_pct_sum INTEGER, util_gpu_pct_n INTEGER NOT NULL, util_gpu_pct_max INTEGER,
    util_mem_pct_sum INTEGER, util_mem_pct_n INTEGER NOT NULL, util_mem_pct_max INTEGER,
    mem_used_bytes_sum INTEGER, mem_used_bytes_n INTEGER NOT NULL, mem_used_bytes_max INTEGER,
    mem_total_bytes_sum INTEGER, mem_total_bytes_n INTEGER NOT NULL, mem_total_bytes_max INTEGER,
    temp_c_sum INTEGER, temp_c_n INTEGER NOT NULL, temp_c_max INTEGER,
    power_w_sum REAL, power_w_n INTEGER NOT NULL, power_w_max REAL,
    power_limit_w_sum REAL, power_limit_w_n INTEGER NOT NULL, power_limit_w_max REAL,
    energy_j_sum REAL, energy_j_n INTEGER NOT NULL, energy_j_max REAL,
    fan_pct_sum INTEGER, fan_pct_n INTEGER NOT NULL, fan_pct_max INTEGER,
    sm_clock_mhz_sum INTEGER, sm_clock_mhz_n INTEGER NOT NULL, sm_clock_mhz_max INTEGER,
    mem_clock_mhz_sum INTEGER, mem_clock_mhz_n INTEGER NOT NULL, mem_clock_mhz_max INTEGER,
    pstate_sum INTEGER, pstate_n INTEGER NOT NULL, pstate_max INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;

CREATE TABLE rollup_1800 (
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    util_gpu_pct_sum INTEGER, util_gpu_pct_n INTEGER NOT NULL, util_gpu_pct_max INTEGER,
    util_mem_pct_sum INTEGER, util_mem_pct_n INTEGER NOT NULL, util_mem_pct_max INTEGER,
    mem_used_bytes_sum INTEGER, mem_used_bytes_n INTEGER NOT NULL, mem_used_bytes_max INTEGER,
    mem_total_bytes_sum INTEGER, mem_total_bytes_n INTEGER NOT NULL, mem_total_bytes_max INTEGER,
    temp_c_sum INTEGER, temp_c_n INTEGER NOT NULL, temp_c_max INTEGER,
    power_w_sum REAL, power_w_n INTEGER NOT NULL, power_w_max REAL,
    power_limit_w_sum REAL, power_limit_w_n INTEGER NOT NULL, power_limit_w_max REAL,
    energy_j_sum REAL, energy_j_n INTEGER NOT NULL, energy_j_max REAL,
    fan_pct_sum INTEGER, fan_pct_n INTEGER NOT NULL, fan_pct_max INTEGER,
    sm_clock_mhz_sum INTEGER, sm_clock_mhz_n INTEGER NOT NULL, sm_clock_mhz_max INTEGER,
    mem_clock_mhz_sum INTEGER, mem_clock_mhz_n INTEGER NOT NULL, mem_clock_mhz_max INTEGER,
    pstate_sum INTEGER, pstate_n INTEGER NOT NULL, pstate_max INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;

CREATE TABLE rollup_3600 (
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    util_gpu_pct_sum INTEGER, util_gpu_pct_n INTEGER NOT NULL, util_gpu_pct_max INTEGER,
    util_mem_pct_sum INTEGER, util_mem_pct_n INTEGER NOT NULL, util_mem_pct_max INTEGER,
    mem_used_bytes_sum INTEGER, mem_used_bytes_n INTEGER NOT NULL, mem_used_bytes_max INTEGER,
    mem_total_bytes_sum INTEGER, mem_total_bytes_n INTEGER NOT NULL, mem_total_bytes_max INTEGER,
    temp_c_sum INTEGER, temp_c_n INTEGER NOT NULL, temp_c_max INTEGER,
    power_w_sum REAL, power_w_n INTEGER NOT NULL, power_w_max REAL,
    power_limit_w_sum REAL, power_limit_w_n INTEGER NOT NULL, power_limit_w_max REAL,
    energy_j_sum REAL, energy_j_n INTEGER NOT NULL, energy_j_max REAL,
    fan_pct_sum INTEGER, fan_pct_n INTEGER NOT NULL, fan_pct_max INTEGER,
    sm_clock_mhz_sum INTEGER, sm_clock_mhz_n INTEGER NOT NULL, sm_clock_mhz_max INTEGER,
    mem_clock_mhz_sum INTEGER, mem_clock_mhz_n INTEGER NOT NULL, mem_clock_mhz_max INTEGER,
    pstate_sum INTEGER, pstate_n INTEGER NOT NULL, pstate_max INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;

CREATE TABLE rollup_7200 (
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    n INTEGER NOT NULL,
    util_gpu_pct_sum INTEGER, util_gpu_pct_n INTEGER NOT NULL, util_gpu_pct_max INTEGER,
    util_mem_pct_sum INTEGER, util_mem_pct_n INTEGER NOT NULL, util_mem_pct_max INTEGER,
    mem_used_bytes_sum INTEGER, mem_used_bytes_n INTEGER NOT NULL, mem_used_bytes_max INTEGER,
    mem_total_bytes_sum INTEGER, mem_total_bytes_n INTEGER NOT NULL, mem_total_bytes_max INTEGER,
    temp_c_sum INTEGER, temp_c_n INTEGER NOT NULL, temp_c_max INTEGER,
    power_w_sum REAL, power_w_n INTEGER NOT NULL, power_w_max REAL,
    power_limit_w_sum REAL, power_limit_w_n INTEGER NOT NULL, power_limit_w_max REAL,
    energy_j_sum REAL, energy_j_n INTEGER NOT NULL, energy_j_max REAL,
    fan_pct_sum INTEGER, fan_pct_n INTEGER NOT NULL, fan_pct_max INTEGER,
    sm_clock_mhz_sum INTEGER, sm_clock_mhz_n INTEGER NOT NULL, sm_clock_mhz_max INTEGER,
    mem_clock_mhz_sum INTEGER, mem_clock_mhz_n INTEGER NOT NULL, mem_clock_mhz_max INTEGER,
    pstate_sum INTEGER, pstate_n INTEGER NOT NULL, pstate_max INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;
"""

# Processes, compactly (issue 8). `proc_identities`: one row per process as a host saw it (the
# same identity on several GPUs, or for days, is stored once). `proc_spans`: one row per process
# per GPU per unbroken run of ticks at one memory size, [start_ts, end_ts] the first and last tick
# of the run (it covers [start_ts, end_ts + interval_s)). kind 0 is compute, 1 graphics. Rows with
# proc_id LIST_KNOWN_PROC_ID (no identity) are the runs of ticks whose process list was known, so
# that "nobody" (a known, empty list) and "unknown" stay apart.
LIST_KNOWN_PROC_ID = 0
KIND_CODES: dict[str, int] = {"compute": 0, "graphics": 1}

# Energy per GPU per reading (the `energy` view), against the GPU's previous reading: the
# counter's increase (a decrease is a reset, so the new value counts, being what was used since
# the reset), else the mean of the two power readings times the time between them, only where
# the readings are at most ENERGY_MAX_GAP_INTERVALS intervals apart (the 2.0 in the view).
ENERGY_MAX_GAP_INTERVALS = 2.0

_V4 = """
CREATE TABLE proc_identities (
    proc_id INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    visible INTEGER NOT NULL,
    name TEXT,
    cmdline TEXT,
    user TEXT,
    container_id TEXT,
    container_name TEXT,
    first_ts REAL NOT NULL
);
CREATE INDEX proc_identities_by_pid ON proc_identities (host, pid);
CREATE TABLE proc_spans (
    gpu_id INTEGER NOT NULL,
    start_ts REAL NOT NULL,
    proc_id INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    end_ts REAL NOT NULL,
    used_mem_bytes INTEGER,
    PRIMARY KEY (gpu_id, start_ts, proc_id, kind)
) WITHOUT ROWID;
CREATE INDEX proc_spans_by_end ON proc_spans (gpu_id, end_ts);
CREATE VIEW processes AS
SELECT g.host, g.gpu_index, g.gpu_uuid, i.pid,
    CASE s.kind WHEN 1 THEN 'graphics' ELSE 'compute' END AS kind,
    i.name, i.cmdline, i.user, i.container_id, i.container_name, i.visible,
    s.start_ts, s.end_ts, s.used_mem_bytes
FROM proc_spans AS s
JOIN gpus AS g ON g.gpu_id = s.gpu_id
JOIN proc_identities AS i ON i.proc_id = s.proc_id;
CREATE VIEW energy AS
SELECT g.host, g.gpu_index, g.gpu_uuid, w.ts, w.energy_j, w.power_w,
    CASE
    WHEN w.prev_ts IS NULL THEN NULL
    WHEN w.energy_j IS NOT NULL AND w.prev_energy_j IS NOT NULL THEN
        CASE WHEN w.energy_j >= w.prev_energy_j THEN w.energy_j - w.prev_energy_j
        ELSE w.energy_j END
    WHEN w.ts - w.prev_ts <= 2.0 * coalesce(g.interval_s, 60)
        AND coalesce(w.power_w, w.prev_power_w) IS NOT NULL THEN
        (coalesce(w.power_w, w.prev_power_w) + coalesce(w.prev_power_w, w.power_w)) / 2.0
        * (w.ts - w.prev_ts)
    END AS delta_j,
    CASE
    WHEN w.prev_ts IS NULL THEN NULL
    WHEN w.energy_j IS NOT NULL AND w.prev_energy_j IS NOT NULL THEN 'counter'
    WHEN w.ts - w.prev_ts <= 2.0 * coalesce(g.interval_s, 60)
        AND coalesce(w.power_w, w.prev_power_w) IS NOT NULL THEN 'power'
    END AS source
FROM (SELECT gpu_id, ts, energy_j, power_w, lag(ts) OVER p AS prev_ts, lag(energy_j) OVER p AS prev_energy_j, lag(power_w) OVER p AS prev_power_w FROM samples  WINDOW p AS (PARTITION BY gpu_id ORDER BY ts)) AS w
JOIN gpus AS g ON g.gpu_id = w.gpu_id;
"""  # noqa: E501

# The `energy` view, version 5: a GPU's error ticks add nothing and nothing is integrated into or
# out of them. The counter's increase is taken against the GPU's previous error-free reading, across
# any error ticks or gap between them (window `ok`: error-free readings apart from errored ones);
# power only against the GPU's previous reading when that one is error-free (prev_ts equal to
# prev_any_ts) and at most two intervals before. services/web/energy.py applies the same rules.
_V5 = """
DROP VIEW energy;
CREATE VIEW energy AS
SELECT g.host, g.gpu_index, g.gpu_uuid, w.ts, w.energy_j, w.power_w,
    CASE
    WHEN w.error IS NOT NULL OR w.prev_ts IS NULL THEN NULL
    WHEN w.energy_j IS NOT NULL AND w.prev_energy_j IS NOT NULL THEN
        CASE WHEN w.energy_j >= w.prev_energy_j THEN w.energy_j - w.prev_energy_j
        ELSE w.energy_j END
    WHEN w.prev_ts = w.prev_any_ts
        AND w.ts - w.prev_ts <= 2.0 * coalesce(g.interval_s, 60)
        AND coalesce(w.power_w, w.prev_power_w) IS NOT NULL THEN
        (coalesce(w.power_w, w.prev_power_w) + coalesce(w.prev_power_w, w.power_w)) / 2.0
        * (w.ts - w.prev_ts)
    END AS delta_j,
    CASE
    WHEN w.error IS NOT NULL OR w.prev_ts IS NULL THEN NULL
    WHEN w.energy_j IS NOT NULL AND w.prev_energy_j IS NOT NULL THEN 'counter'
    WHEN w.prev_ts = w.prev_any_ts
        AND w.ts - w.prev_ts <= 2.0 * coalesce(g.interval_s, 60)
        AND coalesce(w.power_w, w.prev_power_w) IS NOT NULL THEN 'power'
    END AS source
FROM (
    SELECT gpu_id, ts, error, energy_j, power_w,
        lag(ts) OVER ok AS prev_ts, lag(energy_j) OVER ok AS prev_energy_j,
        lag(power_w) OVER ok AS prev_power_w, lag(ts) OVER every AS prev_any_ts
    FROM samples
    WINDOW ok AS (PARTITION BY gpu_id, error IS NULL ORDER BY ts),
        every AS (PARTITION BY gpu_id ORDER BY ts)
) AS w
JOIN gpus AS g ON g.gpu_id = w.gpu_id;
"""

# Version 6: which tables of the original pyCudaWatch (its `metrics`, GPU 0 of one host) were
# imported into `samples`, so that each is imported once (services/writer/legacy.py). The
# original table itself is left as it is, for its owner to drop.
_V6 = """
CREATE TABLE legacy_imports (
    source_table TEXT PRIMARY KEY,
    gpu_uuid TEXT NOT NULL,
    rows_imported INTEGER NOT NULL,
    rows_left_out INTEGER NOT NULL,
    imported_ts REAL NOT NULL
);
"""

# Version 7: the critical XID errors each GPU reported (NVML's event set, read by the sampler),
# one row per event, keyed so that a replayed tick stores nothing twice; and the documented view
# `xids`, one row per event with its GPU's identity.
_V7 = """
CREATE TABLE xid_events (
    gpu_id INTEGER NOT NULL REFERENCES gpus (gpu_id),
    ts REAL NOT NULL,
    code INTEGER NOT NULL,
    gpu_instance_id INTEGER,
    compute_instance_id INTEGER,
    PRIMARY KEY (gpu_id, ts, code)
) WITHOUT ROWID;
CREATE VIEW xids AS
SELECT g.host, g.gpu_index, g.gpu_uuid, g.gpu_name, x.ts, x.code, x.gpu_instance_id,
    x.compute_instance_id
FROM xid_events AS x JOIN gpus AS g ON g.gpu_id = x.gpu_id;
"""

# Version 8: with each GPU's identity, the newest CUDA version its driver supports and its
# limits (a JSON object of common.messages.GpuLimits' fields: they do not change while its
# sampler runs). The health metrics (common.metrics), a column each in the samples and a sum, count
# and max each in every rollup level; the documented view `health_readings` (`readings` stays as
# released: people's queries rely on its columns). And
# `health_states`: a GPU's health counters and states, one row each time one of them changes
# (what moves while a GPU works normally at most every ten minutes on its own:
# services/writer/health_states.py), `findings` the bits of common.health.FINDING_KINDS; the
# documented view `health`.
# The SQL is generated from the literal lists below, which are frozen like the text above.
_V8_METRICS: tuple[str, ...] = (
    "enc_util_pct", "dec_util_pct", "mem_temp_c", "pcie_tx_kb_per_s", "pcie_rx_kb_per_s",
    "gr_engine_active_pct", "sm_active_pct", "tensor_active_pct", "dram_active_pct",
)  # fmt: skip
_V8_LEVELS_S = (60, 600, 1800, 3600, 7200)
_V8 = (
    "\n".join(
        [
            "ALTER TABLE gpus ADD COLUMN cuda_version TEXT;",
            "ALTER TABLE gpus ADD COLUMN limits TEXT;",
        ]
        + [f"ALTER TABLE samples ADD COLUMN {name} INTEGER;" for name in _V8_METRICS]
        + [
            f"ALTER TABLE rollup_{level_s} ADD COLUMN {name}_{part};"
            for level_s in _V8_LEVELS_S
            for name in _V8_METRICS
            for part in ("sum INTEGER", "n INTEGER NOT NULL DEFAULT 0", "max INTEGER")
        ]
        + [
            "CREATE VIEW health_readings AS SELECT g.host, g.gpu_index, g.gpu_uuid,"
            " g.gpu_name, s.ts"
            + "".join(f", s.{name}" for name in _V8_METRICS)
            + ", s.error FROM samples AS s JOIN gpus AS g ON g.gpu_id = s.gpu_id;",
        ]
    )
    + """
CREATE TABLE health_states (
    gpu_id INTEGER NOT NULL REFERENCES gpus (gpu_id),
    ts REAL NOT NULL,
    findings INTEGER NOT NULL,
    clocks_event_reasons INTEGER,
    power_violation_ns INTEGER,
    thermal_violation_ns INTEGER,
    ecc_corrected_volatile INTEGER,
    ecc_uncorrected_volatile INTEGER,
    ecc_corrected_aggregate INTEGER,
    ecc_uncorrected_aggregate INTEGER,
    remapped_rows_correctable INTEGER,
    remapped_rows_uncorrectable INTEGER,
    remap_pending INTEGER,
    remap_failure INTEGER,
    retired_pages_sbe INTEGER,
    retired_pages_dbe INTEGER,
    retired_pages_pending INTEGER,
    pcie_link_gen INTEGER,
    pcie_link_width INTEGER,
    pcie_max_gen INTEGER,
    pcie_max_width INTEGER,
    pcie_replays INTEGER,
    nvlink_links INTEGER,
    nvlink_links_active INTEGER,
    PRIMARY KEY (gpu_id, ts)
) WITHOUT ROWID;
CREATE VIEW health AS
SELECT g.host, g.gpu_index, g.gpu_uuid, g.gpu_name, h.ts, h.findings, h.clocks_event_reasons,
    h.power_violation_ns, h.thermal_violation_ns, h.ecc_corrected_volatile,
    h.ecc_uncorrected_volatile, h.ecc_corrected_aggregate, h.ecc_uncorrected_aggregate,
    h.remapped_rows_correctable, h.remapped_rows_uncorrectable, h.remap_pending, h.remap_failure,
    h.retired_pages_sbe, h.retired_pages_dbe, h.retired_pages_pending, h.pcie_link_gen,
    h.pcie_link_width, h.pcie_max_gen, h.pcie_max_width, h.pcie_replays, h.nvlink_links,
    h.nvlink_links_active
FROM health_states AS h JOIN gpus AS g ON g.gpu_id = h.gpu_id;
"""
)

# The columns of health_states after (gpu_id, ts), in its order: what the writer stores and the
# web reads back.
HEALTH_STATE_COLUMNS: tuple[str, ...] = (
    "findings", "clocks_event_reasons", "power_violation_ns", "thermal_violation_ns",
    "ecc_corrected_volatile", "ecc_uncorrected_volatile", "ecc_corrected_aggregate",
    "ecc_uncorrected_aggregate", "remapped_rows_correctable", "remapped_rows_uncorrectable",
    "remap_pending", "remap_failure", "retired_pages_sbe", "retired_pages_dbe",
    "retired_pages_pending", "pcie_link_gen", "pcie_link_width", "pcie_max_gen",
    "pcie_max_width", "pcie_replays", "nvlink_links", "nvlink_links_active",
)  # fmt: skip

# Version 9: alerts. `alert_states`: every alert now pending or firing (the writer's evaluation,
# stored in the transaction of the readings it judged). `alert_events`: each alert's transitions
# (firing, resolved), purged with the readings. `notifications`: the outbox, one row per message
# (its idempotency key unique), written with the transition that caused it; `deliveries`: one
# row per message and target, with its tries, until sent or given up. `alert_silences`: an alert,
# or a rule, host or GPU, silenced until a time (the web process writes these, the user's own
# actions, and test notifications). The documented view `alerts` is the history.
_V9 = """
CREATE TABLE alert_states (
    alert_key TEXT PRIMARY KEY,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    subject TEXT NOT NULL,
    host TEXT,
    gpu_uuid TEXT,
    gpu_index INTEGER,
    gpu_name TEXT,
    state TEXT NOT NULL,
    since_ts REAL NOT NULL,
    last_ts REAL NOT NULL,
    fired_ts REAL,
    notified_ts REAL,
    cleared_since_ts REAL,
    value REAL,
    message TEXT NOT NULL
);
CREATE TABLE alert_events (
    event_id INTEGER PRIMARY KEY,
    alert_key TEXT NOT NULL,
    rule TEXT NOT NULL,
    severity TEXT NOT NULL,
    host TEXT,
    gpu_uuid TEXT,
    gpu_index INTEGER,
    gpu_name TEXT,
    state TEXT NOT NULL,
    ts REAL NOT NULL,
    fired_ts REAL NOT NULL,
    value REAL,
    message TEXT NOT NULL,
    UNIQUE (alert_key, state, ts)
);
CREATE INDEX alert_events_by_ts ON alert_events (ts);
CREATE TABLE notifications (
    notification_id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    alert_key TEXT,
    rule TEXT,
    severity TEXT NOT NULL,
    host TEXT,
    gpu_uuid TEXT,
    title TEXT NOT NULL,
    body TEXT NOT NULL,
    reading_ts REAL,
    created_ts REAL NOT NULL,
    fanned_out INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX notifications_to_fan_out ON notifications (fanned_out) WHERE fanned_out = 0;
CREATE TABLE deliveries (
    notification_id INTEGER NOT NULL REFERENCES notifications (notification_id),
    target TEXT NOT NULL,
    target_shown TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_try_ts REAL NOT NULL,
    done_ts REAL,
    last_error TEXT,
    PRIMARY KEY (notification_id, target)
) WITHOUT ROWID;
CREATE INDEX deliveries_due ON deliveries (next_try_ts) WHERE state = 'queued';
CREATE TABLE alert_silences (
    silence_id INTEGER PRIMARY KEY,
    alert_key TEXT,
    rule TEXT,
    host TEXT,
    gpu_uuid TEXT,
    until_ts REAL NOT NULL,
    created_ts REAL NOT NULL,
    created_by TEXT,
    comment TEXT
);
CREATE VIEW alerts AS
SELECT event_id, ts, state, rule, severity, host, gpu_index, gpu_uuid, gpu_name, fired_ts, value,
    message
FROM alert_events;
"""

# Version 10: the 300 s rollup level, kept for GPUs sampled every 30 s or faster
# (ROLLUP_MAX_INTERVAL_S), filled from their 60 s level (whose buckets tile it, so the sums are
# exact). The SQL is generated from the literal list below (every metric of version 8 and its
# column type), frozen like the text above.
_V10_METRICS: tuple[tuple[str, str], ...] = (
    ("util_gpu_pct", "INTEGER"), ("util_mem_pct", "INTEGER"), ("mem_used_bytes", "INTEGER"),
    ("mem_total_bytes", "INTEGER"), ("temp_c", "INTEGER"), ("power_w", "REAL"),
    ("power_limit_w", "REAL"), ("energy_j", "REAL"), ("fan_pct", "INTEGER"),
    ("sm_clock_mhz", "INTEGER"), ("mem_clock_mhz", "INTEGER"), ("pstate", "INTEGER"),
    ("enc_util_pct", "INTEGER"), ("dec_util_pct", "INTEGER"), ("mem_temp_c", "INTEGER"),
    ("pcie_tx_kb_per_s", "INTEGER"), ("pcie_rx_kb_per_s", "INTEGER"),
    ("gr_engine_active_pct", "INTEGER"), ("sm_active_pct", "INTEGER"),
    ("tensor_active_pct", "INTEGER"), ("dram_active_pct", "INTEGER"),
)  # fmt: skip
_V10 = (
    "CREATE TABLE rollup_300 (\n    gpu_id INTEGER NOT NULL,\n    ts REAL NOT NULL,\n"
    "    n INTEGER NOT NULL,\n"
    + "".join(
        f"    {name}_sum {kind}, {name}_n INTEGER NOT NULL DEFAULT 0, {name}_max {kind},\n"
        for name, kind in _V10_METRICS
    )
    + "    PRIMARY KEY (gpu_id, ts)\n) WITHOUT ROWID;\n"
    + "INSERT INTO rollup_300 (gpu_id, ts, n"
    + "".join(f", {name}_sum, {name}_n, {name}_max" for name, _ in _V10_METRICS)
    + ") SELECT r.gpu_id, CAST(r.ts / 300 AS INTEGER) * 300.0 AS bucket, sum(r.n)"
    + "".join(
        f", sum(r.{name}_sum), sum(r.{name}_n), max(r.{name}_max)" for name, _ in _V10_METRICS
    )
    + " FROM rollup_60 AS r JOIN gpus AS g ON g.gpu_id = r.gpu_id WHERE g.interval_s <= 30"
    + " GROUP BY r.gpu_id, bucket;\n"
)

# Version 11: per-GPU energy buckets, so that /api/v1/energy sums a few rows per GPU and walks
# only the readings at its range's edges (services/writer/energy_buckets.py keeps them; the rules
# are common/energy_pairs.py's and the `energy` view's). A bucket [ts, ts + level_s) holds the
# energy up to each of its readings from the reading before it (which may be in an earlier
# bucket), by source, and the gaps that decided its power pairs under the interval it was made
# with (counted_gap_max_s, skipped_gap_min_s): a reader whose interval falls between them may use
# it; last_ts, its newest reading, lets the writer extend it by newer readings rather than
# recompute it. A row per GPU and bucket holding any reading. The 300 s level is filled here from
# the raw readings with the `energy` view's window functions, the coarser ones from the level
# below, whose buckets tile them.
ENERGY_BUCKET_LEVELS_S: tuple[int, ...] = (300, 3600, 86400)
_V11_COLUMNS = (
    "level_s, gpu_id, ts, counter_j, counter_pairs, power_j, power_pairs, counted_gap_max_s,"
    " skipped_gap_min_s, last_ts"
)
_V11 = (
    """
CREATE TABLE energy_buckets (
    level_s INTEGER NOT NULL,
    gpu_id INTEGER NOT NULL,
    ts REAL NOT NULL,
    counter_j REAL NOT NULL,
    counter_pairs INTEGER NOT NULL,
    power_j REAL NOT NULL,
    power_pairs INTEGER NOT NULL,
    counted_gap_max_s REAL,
    skipped_gap_min_s REAL,
    last_ts REAL NOT NULL,
    PRIMARY KEY (level_s, gpu_id, ts)
) WITHOUT ROWID;
INSERT INTO energy_buckets ("""
    + _V11_COLUMNS
    + """)
SELECT 300, gpu_id, bucket, total(counter_j), count(counter_j), total(power_j), count(power_j),
    max(counted_gap_s), min(skipped_gap_s), max(ts)
FROM (
    SELECT gpu_id, ts,
        (CAST(ts / 300 AS INTEGER) - (CAST(ts / 300 AS INTEGER) * 300.0 > ts)) * 300.0 AS bucket,
        CASE WHEN counter THEN
            CASE WHEN energy_j >= prev_energy_j THEN energy_j - prev_energy_j ELSE energy_j END
        END AS counter_j,
        CASE WHEN power AND ts - prev_ts <= max_gap_s THEN
            (coalesce(power_w, prev_power_w) + coalesce(prev_power_w, power_w)) / 2.0
            * (ts - prev_ts)
        END AS power_j,
        CASE WHEN power AND ts - prev_ts <= max_gap_s THEN ts - prev_ts END AS counted_gap_s,
        CASE WHEN power AND ts - prev_ts > max_gap_s THEN ts - prev_ts END AS skipped_gap_s
    FROM (
        SELECT x.*, 2.0 * coalesce(g.interval_s, 60) AS max_gap_s,
            x.error IS NULL AND x.prev_ts IS NOT NULL AND x.energy_j IS NOT NULL
                AND x.prev_energy_j IS NOT NULL AS counter,
            x.error IS NULL AND x.prev_ts IS NOT NULL
                AND (x.energy_j IS NULL OR x.prev_energy_j IS NULL)
                AND x.prev_ts = x.prev_any_ts
                AND coalesce(x.power_w, x.prev_power_w) IS NOT NULL AS power
        FROM (
            SELECT gpu_id, ts, error, energy_j, power_w,
                lag(ts) OVER ok AS prev_ts, lag(energy_j) OVER ok AS prev_energy_j,
                lag(power_w) OVER ok AS prev_power_w, lag(ts) OVER every AS prev_any_ts
            FROM samples
            WINDOW ok AS (PARTITION BY gpu_id, error IS NULL ORDER BY ts),
                every AS (PARTITION BY gpu_id ORDER BY ts)
        ) AS x
        JOIN gpus AS g ON g.gpu_id = x.gpu_id
    )
)
GROUP BY gpu_id, bucket;
"""
    + "".join(
        f"INSERT INTO energy_buckets ({_V11_COLUMNS})\n"
        f"SELECT {level_s}, gpu_id,"
        f" (CAST(ts / {level_s} AS INTEGER) - (CAST(ts / {level_s} AS INTEGER) * {level_s}.0 > ts))"
        f" * {level_s}.0 AS bucket, total(counter_j), sum(counter_pairs), total(power_j),"
        " sum(power_pairs), max(counted_gap_max_s), min(skipped_gap_min_s), max(last_ts)\n"
        f"FROM energy_buckets WHERE level_s = {finer_s} GROUP BY gpu_id, bucket;\n"
        for finer_s, level_s in ((300, 3600), (3600, 86400))
    )
)

# Each entry moves the file from user_version == its position to position + 1. Append only.
MIGRATIONS: tuple[str, ...] = (_V1, _V2, _V3, _V4, _V5, _V6, _V7, _V8, _V9, _V10, _V11)
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
