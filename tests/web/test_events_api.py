"""GET /api/v1/events: a GPU's health events and counts over a range, from the stored file.

One simulated history, written through the writer's own Store, one tick a second:

    t0 healthy            t5 2 uncorrected ECC errors, 2 rows pending remap
    t1 the same           t6 PCIe link trained down to x8 (max x16)
    t2 HW thermal         t7 XID 79, nothing else changes
    t3 still (1 s more)   t8 link back at x16, the remap applied
    t4 throttling ends, 3 s of thermal violation in all
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import msgspec
import pytest

from common.messages import GpuHealth, GpuLimits, GpuReading, Tick, XidEvent
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from services.web.app import create_app
from services.web.event_reads import events_job
from services.writer.health_states import COUNTER_ROW_S
from services.writer.store import Store
from tests.conftest import FakeClock
from tests.web.conftest import make_config

T0 = 1_700_000_000.0
UUID = "GPU-events-0"
OTHER = "GPU-events-1"
LIMITS = GpuLimits(pcie_max_gen=5, pcie_max_width=16)
S = 1_000_000_000  # ns
BASE = GpuHealth(
    clocks_event_reasons=0,
    thermal_violation_ns=0,
    power_violation_ns=0,
    ecc_uncorrected_volatile=0,
    ecc_uncorrected_aggregate=0,
    ecc_corrected_aggregate=7,
    remapped_rows_uncorrectable=0,
    remap_pending=False,
    remap_failure=False,
    pcie_link_gen=5,
    pcie_link_width=16,
    pcie_replays=5,
)
HOT = {"clocks_event_reasons": 0x40}
ECC = {
    "ecc_uncorrected_volatile": 2,
    "ecc_uncorrected_aggregate": 2,
    "remapped_rows_uncorrectable": 2,
    "remap_pending": True,
}
AFTER_RESET = {"ecc_uncorrected_volatile": 0, "ecc_uncorrected_aggregate": 2}
X8 = {"pcie_link_width": 8}
HISTORY: list[dict] = [
    {},
    {},
    {**HOT, "thermal_violation_ns": 1 * S},
    {**HOT, "thermal_violation_ns": 2 * S},
    {"thermal_violation_ns": 3 * S},
    {"thermal_violation_ns": 3 * S, **ECC},
    {"thermal_violation_ns": 3 * S, **ECC, **X8},
    {"thermal_violation_ns": 3 * S, **ECC, **X8},
    {"thermal_violation_ns": 3 * S, **AFTER_RESET, "remapped_rows_uncorrectable": 2},
]


def reading(
    uuid: str, index: int, health: GpuHealth, xids: list[XidEvent], util_pct: int = 90
) -> GpuReading:
    return GpuReading(
        index=index,
        uuid=uuid,
        name="NVIDIA H100 80GB HBM3",
        util_gpu_pct=util_pct,
        health=health,
        limits=LIMITS,
        xid_events=xids,
    )


def history_ticks() -> list[Tick]:
    made = []
    for second, changes in enumerate(HISTORY):
        ts = T0 + second
        xids = [XidEvent(ts, 79)] if second == 7 else []
        gpus = [
            reading(UUID, 0, msgspec.structs.replace(BASE, **changes), xids),
            reading(OTHER, 1, BASE, []),
        ]
        made.append(Tick("alpha", "run", second, ts, 1.0, "550.54", None, gpus))
    return made


def write(path: Path, ticks: list[Tick]) -> None:
    store = Store(path)
    store.write(ticks)
    store.close()


def health_rows(path: Path, uuid: str = UUID) -> list[float]:
    conn = sqlite3.connect(path)
    try:
        rows = conn.execute("SELECT ts FROM health WHERE gpu_uuid = ? ORDER BY ts", (uuid,))
        return [ts - T0 for (ts,) in rows]
    finally:
        conn.close()


@pytest.fixture
def db_path(tmp_path) -> Path:
    path = tmp_path / "db"
    write(path, history_ticks())
    return path


@pytest.fixture
async def client(aiohttp_client, db_path):
    return await aiohttp_client(create_app(make_config(db_path)))


async def events(client, status: int = 200, **params: object) -> dict:
    response = await client.get("/api/v1/events", params={k: str(v) for k, v in params.items()})
    body = await response.json()
    assert response.status == status, body
    return body


def test_a_row_is_stored_only_when_the_gpus_health_changes(db_path):
    assert health_rows(db_path) == [0, 2, 4, 5, 6, 8]  # t1, t3 (violation alone), t7 add none
    assert health_rows(db_path, OTHER) == [0]  # a healthy GPU: one row, however long it runs


def test_a_replayed_batch_stores_no_row_twice(db_path):
    write(db_path, history_ticks())
    assert health_rows(db_path) == [0, 2, 4, 5, 6, 8]


def one_gpu_ticks(healths: list[GpuHealth], utils: list[int] | None = None) -> list[Tick]:
    utils = utils or [90] * len(healths)
    return [
        Tick("alpha", "run", k, T0 + k, 1.0, None, None, [reading(UUID, 0, health, [], util)])
        for k, (health, util) in enumerate(zip(healths, utils, strict=True))
    ]


def test_a_thermal_episode_adds_rows_at_its_ends_and_its_time_is_exact(tmp_path):
    path = tmp_path / "db"
    hot = msgspec.structs.replace(BASE, clocks_event_reasons=0x40)
    healths = [msgspec.structs.replace(hot, thermal_violation_ns=k * S) for k in range(700)]
    healths.append(msgspec.structs.replace(BASE, thermal_violation_ns=700 * S))
    write(path, one_gpu_ticks(healths))

    # the violation time alone: once every COUNTER_ROW_S; the episode's end at once
    assert health_rows(path) == [0, 600, 700]
    conn = sqlite3.connect(path)
    [(last,)] = conn.execute("SELECT thermal_violation_ns FROM health WHERE ts = ?", (T0 + 700,))
    conn.close()
    assert last == 700 * S
    assert COUNTER_ROW_S == 600


def test_what_moves_while_a_gpu_works_normally_adds_a_row_at_most_every_ten_minutes(tmp_path):
    # at its power cap under full load: the SW power cap bit comes and goes every tick, the power
    # violation time grows, the link generation drops to Gen1 between bursts (the GPU idle), a
    # corrected error now and then
    path = tmp_path / "db"
    utils = [90 if k % 3 else 5 for k in range(1300)]
    healths = [
        msgspec.structs.replace(
            BASE,
            clocks_event_reasons=0x4 if k % 2 else 0,
            power_violation_ns=k * S // 2,
            pcie_link_gen=5 if k % 3 else 1,
            ecc_corrected_aggregate=7 + k // 100,
        )
        for k in range(1300)
    ]
    write(path, one_gpu_ticks(healths, utils))

    assert health_rows(path) == [0, 600, 1200]


async def test_each_change_is_an_event_in_time_order_in_words(client):
    body = await events(client, **{"from": T0, "to": T0 + 100})

    got = [(e["ts"] - T0, e["kind"], e["code"], e["text"]) for e in body["events"]]
    assert got == [
        (2, "throttling_started", None, "throttled: HW thermal"),
        (4, "throttling_stopped", None, "throttling stopped"),
        (5, "remap_pending", None, "2 rows pending remap (a GPU reset applies it)"),
        (5, "ecc_uncorrected", None, "2 new uncorrected ECC errors"),
        (6, "link_downgraded", None, "PCIe Gen5 x8 (max Gen5 x16)"),
        (7, "xid", 79, "XID 79 (GPU fell off the bus)"),
        (8, "remap_cleared", None, "no rows pending remap"),
        (8, "link_restored", None, "PCIe link back at its maximum"),
    ]
    assert {(e["gpu_uuid"], e["host"], e["gpu_index"]) for e in body["events"]} == {
        (UUID, "alpha", 0)
    }
    assert body["truncated"] is False


async def test_the_counts_are_what_happened_in_the_range(client):
    body = await events(client, **{"from": T0, "to": T0 + 100})
    counts = {c["gpu_uuid"]: c for c in body["counts"]}

    assert counts[UUID] == {
        "gpu_uuid": UUID,
        "host": "alpha",
        "gpu_index": 0,
        "xids": 1,
        "ecc_corrected": 0,
        "ecc_uncorrected": 2,  # the aggregate: the volatile reset at t8 does not count again
        "thermal_violation_s": 3.0,
        "power_violation_s": 0.0,
        "pcie_replays": 0,
    }
    assert counts[OTHER]["xids"] == 0 and counts[OTHER]["thermal_violation_s"] == 0.0


async def test_a_range_starting_inside_an_episode_counts_from_the_state_before_it(client):
    body = await events(client, gpu=UUID, **{"from": T0 + 3, "to": T0 + 6})

    kinds = [(e["ts"] - T0, e["kind"]) for e in body["events"]]
    # throttling started before the range: only its end is in it
    assert kinds == [
        (4, "throttling_stopped"),
        (5, "remap_pending"),
        (5, "ecc_uncorrected"),
        (6, "link_downgraded"),
    ]
    [counts] = body["counts"]
    # 1 s at t2, 3 s at t4 (t3 stored no row): spread over [t2, t4], the range holds [t3, t4]
    assert counts["thermal_violation_s"] == 1.0
    assert (counts["xids"], counts["ecc_uncorrected"]) == (0, 2)


async def test_a_range_with_nothing_in_it_has_no_events_and_zero_counts(client):
    body = await events(client, gpu=OTHER, **{"from": T0, "to": T0 + 100})

    assert body["events"] == []
    [counts] = body["counts"]
    assert (counts["xids"], counts["ecc_uncorrected"], counts["pcie_replays"]) == (0, 0, 0)


@pytest.mark.parametrize(
    ("params", "status", "says"),
    [
        ({"gpu": "GPU-nobody"}, 404, "gpu='GPU-nobody' is not a known GPU"),
        ({"host": "nowhere"}, 404, "host='nowhere' is not a known host"),
        ({"from": T0 + 10, "to": T0}, 400, "from"),
        ({"kind": "xid"}, 400, "unknown parameter"),
    ],
)
async def test_a_bad_query_is_a_json_error(client, params, status, says):
    body = await events(client, status, **params)
    assert says in body["error"]


def test_a_purge_keeps_each_gpus_state_at_the_cutoff(db_path):
    store = Store(db_path)
    store.purge(T0 + 5.5)
    store.close()

    assert health_rows(db_path) == [5, 6, 8]  # t5's row still says what held at the cutoff
    assert health_rows(db_path, OTHER) == [0]  # its only row is its state since t0


def simulated_history(path: Path, hours: float, **scenarios: tuple[int, ...]) -> list[str]:
    """Store `hours` of 30 s ticks of 4 simulated GPUs, read by the sampler's own reader over a
    clock stepped through the past; return the GPUs' UUIDs."""
    clock = FakeClock()
    nvml = SimulatedNvml(4, host="sim", clock=clock.wall, **scenarios)
    reader = GpuReader(nvml, monotonic=clock.monotonic, wall=clock.wall)
    reader.start()
    ticks = []
    for seq in range(int(hours * 120)):
        clock.advance(30.0)
        ticks.append(build_tick(reader.read(), "sim", "history", seq, clock.wall(), 30.0))
    reader.close()
    write(path, ticks)
    return [device.uuid for device in nvml.devices]


async def test_a_hot_simulated_gpu_throttles_and_its_episodes_are_events(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    uuids = simulated_history(path, 3.0, hot_gpus=(1,))
    client = await aiohttp_client(create_app(make_config(path)))

    body = await events(client, **{"from": 0, "to": 4e9})

    hot = [e for e in body["events"] if e["gpu_uuid"] == uuids[1]]
    started = [e for e in hot if e["kind"] == "throttling_started"]
    stopped = [e for e in hot if e["kind"] == "throttling_stopped"]
    assert started and stopped, "the hot GPU's training phases heat it past its slowdown"
    assert all("thermal" in e["text"] for e in started)
    assert not any(e["gpu_uuid"] != uuids[1] and "throttling" in e["kind"] for e in body["events"])
    counts = {c["gpu_uuid"]: c for c in body["counts"]}
    assert counts[uuids[1]]["thermal_violation_s"] > 60
    assert counts[uuids[0]]["thermal_violation_s"] == 0


def test_a_replay_that_arrives_after_the_live_ticks_keeps_its_health_changes(tmp_path):
    def at(second: int) -> Tick:
        health = msgspec.structs.replace(
            BASE,
            clocks_event_reasons=0x40 if 20 <= second < 30 else 0,
            ecc_uncorrected_aggregate=1 if second >= 50 else 0,
        )
        return Tick(
            "alpha", "run", second, T0 + second, 1.0, None, None, [reading(UUID, 0, health, [])]
        )

    in_order, replayed = tmp_path / "in-order", tmp_path / "replayed"
    write(in_order, [at(k) for k in range(101)])
    # the writer was down for ticks 1-99: the live tick 100 is stored first, then the replay
    for batch in ([at(0)], [at(100)], [at(k) for k in range(1, 100)]):
        write(replayed, batch)

    def told(path: Path) -> tuple[list, int | None]:
        conn = sqlite3.connect(path)
        try:
            read = events_job(T0, T0 + 200, (), ())(conn)
        finally:
            conn.close()
        return [(e.ts - T0, e.kind) for e, _ in read.events], read.gpus[0].counts.ecc_uncorrected

    assert told(replayed) == told(in_order)
    assert told(replayed) == (
        [(20, "throttling_started"), (30, "throttling_stopped"), (50, "ecc_uncorrected")],
        1,
    )
    assert health_rows(replayed)[:4] == [0, 20, 30, 50]  # and the live tick's own row, at 100
