"""Energy across an outage: a GPU's error ticks add nothing, and its counter counts across them.

Power is integrated only between two consecutive error-free readings at most two intervals
apart; the counter's increase is taken between a GPU's error-free readings, across any error
ticks or gap between them. Checked in the `energy` view and in /api/v1/energy, on files the
writer wrote. Interval 60 s; power 300 W throughout, so an invented pair would add 18,000 J.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.messages import GpuReading, Tick
from services.web.app import create_app
from services.writer.store import Store
from tests.web.conftest import make_config

T0 = 1_700_000_040.0  # a multiple of 60
J_PER_KWH = 3.6e6
POWER_W = 300.0

# Per GPU, {tick: energy_j}, None for a tick in error ("GPU is lost": every metric null).
STEADY = {0: 5000.0, 1: 5000.0, 2: None, 3: 5000.0, 4: 5000.0}
MOVED = {0: 5000.0, 1: 5000.0, 2: None, 3: None, 4: 5000.0 + 4321.0}
# No counter: power only. The error tick splits the readings into pairs that may not count.
POWER_ONLY = {0: "ok", 1: "ok", 2: None, 3: "ok", 4: "ok"}


def at(k: float) -> float:
    return T0 + 60 * k


def _reading(uuid: str, index: int, energy_j: float | None, ok: bool) -> GpuReading:
    if not ok:
        return GpuReading(index=index, uuid=uuid, name="H100", error="GPU is lost")
    return GpuReading(index=index, uuid=uuid, name="H100", energy_j=energy_j, power_w=POWER_W)


def outage_ticks() -> list[Tick]:
    ticks = []
    for k in range(5):
        gpus = [
            _reading("STEADY", 0, STEADY[k], STEADY[k] is not None),
            _reading("MOVED", 1, MOVED[k], MOVED[k] is not None),
            _reading("POWER", 2, None, POWER_ONLY[k] is not None),
        ]
        ticks.append(Tick(host="h", sampler_id="s", seq=k, ts=at(k), interval_s=60.0, gpus=gpus))
    return ticks


@pytest.fixture
def outage_db(tmp_path: Path) -> Path:
    path = tmp_path / "gpu_stats.db"
    store = Store(path)
    store.write(outage_ticks())
    store.close()
    return path


def view_rows(path: Path, uuid: str) -> list[tuple]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(
            "SELECT ts, delta_j, source FROM energy WHERE gpu_uuid = ? ORDER BY ts", (uuid,)
        ).fetchall()
    finally:
        conn.close()


def test_the_view_adds_nothing_across_an_outage_while_the_counter_stays(outage_db):
    assert view_rows(outage_db, "STEADY") == [
        (at(0), None, None),
        (at(1), 0.0, "counter"),
        (at(2), None, None),  # the error tick
        (at(3), 0.0, "counter"),  # against tick 1, across the error tick
        (at(4), 0.0, "counter"),
    ]


def test_the_view_counts_what_the_counter_moved_across_an_outage(outage_db):
    assert view_rows(outage_db, "MOVED") == [
        (at(0), None, None),
        (at(1), 0.0, "counter"),
        (at(2), None, None),
        (at(3), None, None),
        (at(4), 4321.0, "counter"),
    ]


def test_the_view_never_integrates_power_into_or_out_of_an_error_tick(outage_db):
    assert view_rows(outage_db, "POWER") == [
        (at(0), None, None),
        (at(1), POWER_W * 60, "power"),
        (at(2), None, None),
        (at(3), None, None),  # its previous reading is the error tick
        (at(4), POWER_W * 60, "power"),
    ]


@pytest.fixture
async def outage_client(aiohttp_client, outage_db):
    return await aiohttp_client(create_app(make_config(outage_db)))


async def energy_by_uuid(client, from_s: float, to_s: float) -> dict[str, dict]:
    response = await client.get(f"/api/v1/energy?from={from_s}&to={to_s}")
    assert response.status == 200
    return {gpu["gpu_uuid"]: gpu for gpu in (await response.json())["gpus"]}


async def test_the_api_reports_no_energy_for_a_steady_counter_through_an_outage(outage_client):
    gpus = await energy_by_uuid(outage_client, at(0), at(5))

    assert gpus["STEADY"]["kwh"] == 0.0
    assert gpus["STEADY"]["source"] == "counter"
    assert gpus["MOVED"]["kwh"] == pytest.approx(4321.0 / J_PER_KWH)
    assert gpus["MOVED"]["source"] == "counter"
    assert gpus["POWER"]["kwh"] == pytest.approx(2 * POWER_W * 60 / J_PER_KWH)
    assert gpus["POWER"]["source"] == "power"


@pytest.mark.parametrize("split_k", [1, 2, 3, 4])
async def test_consecutive_ranges_split_anywhere_in_the_outage_add_up(outage_client, split_k):
    before = await energy_by_uuid(outage_client, at(0), at(split_k))
    after = await energy_by_uuid(outage_client, at(split_k), at(5))

    def joules(gpus: dict[str, dict], uuid: str) -> float:
        kwh = gpus[uuid]["kwh"] if uuid in gpus else None
        return 0.0 if kwh is None else kwh * J_PER_KWH

    for uuid, expected_j in (("STEADY", 0.0), ("MOVED", 4321.0), ("POWER", 2 * POWER_W * 60)):
        assert joules(before, uuid) + joules(after, uuid) == pytest.approx(expected_j), uuid
