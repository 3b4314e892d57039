"""The retention edge: after a purge, history over the rollups agrees with the raw rows kept.

The writer purges readings older than the cutoff; the rollup buckets that straddle the cutoff
must then hold exactly the readings left in them, so that /api/v1/history (which reads the
rollups for coarse buckets) shows what the `readings` view holds: no false gap, no ghost.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.messages import GpuReading, Tick
from common.schema import ROLLUP_LEVELS_S
from services.web.app import create_app
from services.writer.store import Store
from tests.web.conftest import make_config

T0 = 1_700_006_400.0  # a multiple of 7200: the coarsest buckets start on it
assert T0 % max(ROLLUP_LEVELS_S) == 0
INTERVAL_S = 60.0
TICKS = 240  # four hours
# Inside the second 2-hour bucket, and inside a bucket of every finer level too.
CUTOFF_TS = T0 + 7200 + 1800 + 30
UUID = "GPU-edge"


def _ticks() -> list[Tick]:
    return [
        Tick(
            host="h",
            sampler_id="s",
            seq=k,
            ts=T0 + INTERVAL_S * k,
            interval_s=INTERVAL_S,
            gpus=[GpuReading(index=0, uuid=UUID, name="H100", util_gpu_pct=k % 100, temp_c=50)],
        )
        for k in range(TICKS)
    ]


@pytest.fixture
def purged_db(tmp_path: Path) -> Path:
    path = tmp_path / "gpu_stats.db"
    store = Store(path)
    store.write(_ticks())
    store.purge(CUTOFF_TS)
    store.close()
    return path


def raw_count(path: Path, from_s: float, to_s: float) -> int:
    conn = sqlite3.connect(path)
    try:
        (count,) = conn.execute(
            "SELECT count(*) FROM readings WHERE gpu_uuid = ? AND ts >= ? AND ts < ?",
            (UUID, from_s, to_s),
        ).fetchone()
        return count
    finally:
        conn.close()


async def history(client, from_s: float, to_s: float, points: int) -> tuple[int, list[dict]]:
    response = await client.get(
        f"/api/v1/history?gpu={UUID}&from={from_s}&to={to_s}&points={points}"
    )
    assert response.status == 200, await response.text()
    body = await response.json()
    (series,) = body["series"]
    buckets = [
        {"ts": ts, "count": count} for ts, count in zip(body["ts"], series["count"], strict=True)
    ]
    return body["step_s"], buckets


# points that make the history read each rollup level: 1 bucket of 2 h, 2 of 1 h, 4 of 30 min,
# 12 of 10 min, 120 of 1 min, over the 2-hour bucket that holds the cutoff.
@pytest.mark.parametrize("points", [1, 2, 4, 12, 120])
async def test_history_counts_every_reading_kept_in_the_bucket_that_holds_the_cutoff(
    aiohttp_client, purged_db, points
):
    client = await aiohttp_client(create_app(make_config(purged_db)))
    from_s, to_s = T0 + 7200, T0 + 14400

    step_s, buckets = await history(client, from_s, to_s, points)

    assert step_s == 7200 // points
    kept = raw_count(purged_db, from_s, to_s)
    assert kept == (T0 + 14400 - INTERVAL_S - (CUTOFF_TS + 30)) // INTERVAL_S + 1 == 89
    assert sum(bucket["count"] for bucket in buckets) == kept
    for bucket in buckets:
        assert bucket["count"] == raw_count(purged_db, bucket["ts"], bucket["ts"] + step_s)
