"""Processes, usage, energy and idle GPUs through the HTTP API, on files the writer wrote.

Every expectation is computed by hand from the ticks below (interval 60 s; a span of ticks
t0..tn covers [t0, tn + 60)).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from common.messages import GpuProcess, GpuReading, Tick
from services.web.app import create_app
from services.web.process_reads import PROCESSES_AT_SQL
from services.writer.store import Store
from tests.web.conftest import make_config

T0 = 1_700_000_040.0  # a multiple of 60
GIB = 1 << 30
HOUR_S = 3600.0


def at(k: float) -> float:
    return T0 + 60 * k


def proc(pid: int, mem_gib: float, user: str | None, name: str | None, **more: object):
    return GpuProcess(
        pid=pid,
        used_mem_bytes=int(mem_gib * GIB),
        visible=user is not None,
        name=name,
        cmdline=None if name is None else f"{name} --flag",
        user=user,
        **more,
    )


def write(path: Path, ticks: list[Tick]) -> None:
    store = Store(path)
    store.write(ticks)
    store.close()


def host_tick(host: str, k: float, readings: list[GpuReading]) -> Tick:
    return Tick(host=host, sampler_id=host, seq=int(k), ts=at(k), interval_s=60.0, gpus=readings)


# -- processes and usage ---------------------------------------------------------------------
# GPU-0 (alpha): A (alice, "train", container c1, 2 GiB) on ticks 0-5; B (alice, "eval",
# 1 GiB) on ticks 3-8; C (bob, "<b>x</b>") 4 GiB on ticks 0-4 then 6 GiB on ticks 5-9.
# GPU-1 (beta): a hidden process D (1 GiB) on ticks 0-8; tick 9's list is unknown.


def usage_ticks() -> list[Tick]:
    made = []
    for k in range(10):
        gpu0 = []
        if k <= 5:
            gpu0.append(proc(1, 2, "alice", "train", container_id="c" * 64, container_name="c1"))
        if 3 <= k <= 8:
            gpu0.append(proc(2, 1, "alice", "eval"))
        gpu0.append(proc(3, 4 if k <= 4 else 6, "bob", "<b>x</b>"))
        made.append(
            host_tick("alpha", k, [GpuReading(index=0, uuid="GPU-0", name="H100", processes=gpu0)])
        )
        gpu1 = None if k == 9 else [proc(99, 1, None, None)]
        made.append(
            host_tick("beta", k, [GpuReading(index=0, uuid="GPU-1", name="H100", processes=gpu1)])
        )
    return made


@pytest.fixture
async def usage_client(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    write(path, usage_ticks())
    return await aiohttp_client(create_app(make_config(path)))


async def get_json(client, url: str, status: int = 200) -> dict:
    response = await client.get(url)
    assert response.status == status, await response.text()
    return await response.json()


async def test_processes_at_the_newest_tick_with_since_when(usage_client):
    body = await get_json(usage_client, "/api/v1/processes?gpu=GPU-0")
    assert body["gpu_uuid"] == "GPU-0"
    assert body["ts"] == at(9)
    assert body["processes"] == [
        {
            "pid": 3,
            "kind": "compute",
            "used_mem_bytes": 6 * GIB,
            "visible": True,
            "name": "<b>x</b>",
            "cmdline": "<b>x</b> --flag",
            "user": "bob",
            "container_id": None,
            "container_name": None,
            "since_ts": at(0),  # across its memory change
        }
    ]


async def test_processes_at_a_time_are_those_of_the_tick_at_or_before_it(usage_client):
    body = await get_json(usage_client, f"/api/v1/processes?gpu=GPU-0&at={at(4) + 30}")
    assert body["ts"] == at(4)
    listed = {p["pid"]: (p["used_mem_bytes"], p["since_ts"]) for p in body["processes"]}
    assert listed == {1: (2 * GIB, at(0)), 2: (GIB, at(3)), 3: (4 * GIB, at(0))}
    assert body["processes"][0]["container_name"] == "c1"
    after = await get_json(usage_client, f"/api/v1/processes?gpu=GPU-0&at={at(6)}")
    assert [p["pid"] for p in after["processes"]] == [2, 3]
    before = await get_json(usage_client, f"/api/v1/processes?gpu=GPU-0&at={at(0) - 1}")
    assert before == {"gpu_uuid": "GPU-0", "ts": None, "processes": None}


async def test_an_unknown_list_is_null_and_a_hidden_process_is_listed_as_hidden(usage_client):
    newest = await get_json(usage_client, "/api/v1/processes?gpu=GPU-1")
    assert newest["ts"] == at(9) and newest["processes"] is None
    earlier = await get_json(usage_client, f"/api/v1/processes?gpu=GPU-1&at={at(8)}")
    [hidden] = earlier["processes"]
    assert hidden["pid"] == 99 and hidden["visible"] is False and hidden["user"] is None


@pytest.mark.parametrize(
    "query",
    [
        "",
        "gpu=",
        "gpu=GPU-0&at=yesterday",
        "gpu=GPU-0&at=-5",
        "gpu=GPU-0&gpu=GPU-1",
        "gpu=GPU-0&colour=red",
    ],
)
async def test_bad_processes_parameters_are_refused(usage_client, query):
    body = await get_json(usage_client, f"/api/v1/processes?{query}", 400)
    assert body["error"]


async def test_an_unknown_gpu_is_not_found(usage_client):
    body = await get_json(usage_client, "/api/v1/processes?gpu=GPU-nope", 404)
    assert "GPU-nope" in body["error"]


async def test_usage_by_user_unions_overlapping_processes_per_gpu(usage_client):
    body = await get_json(usage_client, f"/api/v1/usage?from={at(0)}&to={at(10)}")
    assert (body["from"], body["to"], body["by"]) == (at(0), at(10), "user")
    rows = {row["key"]: row for row in body["rows"]}
    # alice: [0, 360) U [180, 540) = 540 s on GPU-0; memory 2 GiB x 360 s + 1 GiB x 360 s
    assert rows["alice"]["gpu_hours"] == pytest.approx(540 / HOUR_S)
    assert rows["alice"]["gpu_mem_gib_hours"] == pytest.approx(1080 / HOUR_S)
    assert rows["alice"]["gpus"] == ["GPU-0"]
    # bob: 600 s; 4 GiB x 300 s + 6 GiB x 300 s
    assert rows["bob"]["gpu_hours"] == pytest.approx(600 / HOUR_S)
    assert rows["bob"]["gpu_mem_gib_hours"] == pytest.approx(3000 / HOUR_S)
    # the hidden process: ticks 0-8 on GPU-1 = 540 s (the unknown tick 9 counts for nobody)
    assert rows[None]["gpu_hours"] == pytest.approx(540 / HOUR_S)
    assert [row["key"] for row in body["rows"]] == ["bob", "alice", None]


async def test_usage_over_part_of_the_range_counts_only_that_part(usage_client):
    body = await get_json(usage_client, f"/api/v1/usage?from={at(2)}&to={at(5)}&by=process")
    rows = {row["key"]: row for row in body["rows"]}
    assert rows["train"]["gpu_hours"] == pytest.approx(180 / HOUR_S)
    assert rows["eval"]["gpu_hours"] == pytest.approx(120 / HOUR_S)  # [180, 300)
    assert rows["eval"]["gpu_mem_gib_hours"] == pytest.approx(120 / HOUR_S)
    assert rows["<b>x</b>"]["gpu_mem_gib_hours"] == pytest.approx(4 * 180 / HOUR_S)


async def test_usage_by_container(usage_client):
    body = await get_json(usage_client, f"/api/v1/usage?from={at(0)}&to={at(10)}&by=container")
    rows = {row["key"]: row for row in body["rows"]}
    assert rows["c1"]["gpu_hours"] == pytest.approx(360 / HOUR_S)
    # no container: bob's 600 s and alice's eval (inside bob's time) on GPU-0, D's 540 s on GPU-1
    assert rows[None]["gpu_hours"] == pytest.approx(1140 / HOUR_S)
    assert rows[None]["gpus"] == ["GPU-0", "GPU-1"]


async def test_usage_of_one_gpu_counts_its_processes_alone(usage_client):
    url = f"/api/v1/usage?from={at(0)}&to={at(10)}&by=container"
    body = await get_json(usage_client, url + "&gpu=GPU-1")
    [row] = body["rows"]
    # GPU-1's hidden process alone: 540 s, not the 1,140 s of every GPU's no-container rows
    assert (row["key"], row["gpus"]) == (None, ["GPU-1"])
    assert row["gpu_hours"] == pytest.approx(540 / HOUR_S)
    both = await get_json(usage_client, url + "&gpu=GPU-1&gpu=GPU-0")
    assert {r["key"]: r["gpu_hours"] for r in both["rows"]} == pytest.approx(
        {"c1": 360 / HOUR_S, None: 1140 / HOUR_S}
    )
    missing = await get_json(usage_client, url + "&gpu=GPU-nobody", 404)
    assert missing["error"] == "gpu='GPU-nobody' is not a known GPU UUID"


@pytest.mark.parametrize(
    "query", ["by=group", "from=5&to=4", "from=abc", "to=1e300", "by=user&by=process", "x=1"]
)
async def test_bad_usage_parameters_are_refused(usage_client, query):
    assert (await get_json(usage_client, f"/api/v1/usage?{query}", 400))["error"]


def _steps_of_the_newest_process_list(path: Path, ticks: int) -> int:
    """Write ticks of a GPU whose process changes memory every tick; count the VM steps of
    reading its process list at the newest tick."""
    write(
        path,
        [
            host_tick(
                "alpha",
                k,
                [
                    GpuReading(
                        index=0,
                        uuid="GPU-0",
                        name="H100",
                        processes=[proc(1, 1 + k, "alice", "train")],
                    )
                ],
            )
            for k in range(ticks)
        ],
    )
    conn = sqlite3.connect(path)
    steps = [0]

    def count() -> int:
        steps[0] += 1
        return 0

    conn.set_progress_handler(count, 1)
    rows = conn.execute(PROCESSES_AT_SQL, (1, at(ticks - 1))).fetchall()
    conn.close()
    assert [row[2] for row in rows] == [ticks * GIB]
    return steps[0]


def test_the_newest_process_list_does_not_read_the_gpus_whole_history(tmp_path):
    short = _steps_of_the_newest_process_list(tmp_path / "short", 20)
    long = _steps_of_the_newest_process_list(tmp_path / "long", 2000)  # 2000 ended spans
    assert long < 2 * short


def test_the_processes_view_is_queryable(tmp_path):
    path = tmp_path / "db"
    write(path, usage_ticks())
    conn = sqlite3.connect(path)
    rows = conn.execute(
        "SELECT host, gpu_index, gpu_uuid, pid, kind, name, cmdline, user, container_id,"
        " container_name, visible, start_ts, end_ts, used_mem_bytes FROM processes"
        " WHERE user = 'bob' ORDER BY start_ts"
    ).fetchall()
    assert [(r[3], r[11], r[12], r[13]) for r in rows] == [
        (3, at(0), at(4), 4 * GIB),
        (3, at(5), at(9), 6 * GIB),
    ]


# -- energy ----------------------------------------------------------------------------------
# E0 (alpha 0), counter: 1000, 7000, 500 (a reset), 1500, a gap of 3 intervals, 4500
#   -> 6000 + 500 + 1000 + 3000 (the counter counts across the gap) = 10500 J
# E1 (alpha 1), power only: 100, 200, 200 W, a gap, 300 W
#   -> 150 x 60 + 200 x 60 = 21000 J; the gap is not integrated
# E2 (beta 0): counter 0, 3600, then null with power 60 W (60 W before) -> 3600 + 3600 J, mixed
# E3 (beta 1): nothing -> none


def energy_ticks() -> list[Tick]:
    e0 = {0: 1000.0, 1: 7000.0, 2: 500.0, 3: 1500.0, 6: 4500.0}
    e1 = {0: 100.0, 1: 200.0, 2: 200.0, 5: 300.0}
    made = []
    for k in range(7):
        alpha = []
        if k in e0:
            alpha.append(GpuReading(index=0, uuid="E0", name="H100", energy_j=e0[k]))
        if k in e1:
            alpha.append(GpuReading(index=1, uuid="E1", name="A100", power_w=e1[k]))
        if alpha:
            made.append(host_tick("alpha", k, alpha))
        if k <= 2:
            e2 = GpuReading(
                index=0, uuid="E2", name="L4", energy_j=[0.0, 3600.0, None][k], power_w=60.0
            )
            made.append(host_tick("beta", k, [e2, GpuReading(index=1, uuid="E3", name="L4")]))
    return made


@pytest.fixture
async def energy_client(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    write(path, energy_ticks())
    config = make_config(path, PCW_ENERGY_PRICE_PER_KWH="0.5", PCW_CURRENCY="EUR")
    return await aiohttp_client(create_app(config))


async def test_energy_per_gpu_and_host_with_resets_gaps_and_power(energy_client):
    body = await get_json(energy_client, f"/api/v1/energy?from={at(0)}&to={at(7)}")
    assert (body["price_per_kwh"], body["currency"]) == (0.5, "EUR")
    gpus = {g["gpu_uuid"]: g for g in body["gpus"]}
    kwh = {"E0": 10500 / 3.6e6, "E1": 21000 / 3.6e6, "E2": 7200 / 3.6e6}
    for uuid, expected in kwh.items():
        assert gpus[uuid]["kwh"] == pytest.approx(expected)
        assert gpus[uuid]["cost"] == pytest.approx(expected * 0.5)
    assert [gpus[u]["source"] for u in ("E0", "E1", "E2", "E3")] == [
        "counter",
        "power",
        "mixed",
        "none",
    ]
    assert gpus["E3"]["kwh"] is None and gpus["E3"]["cost"] is None
    hosts = {h["host"]: h for h in body["hosts"]}
    assert hosts["alpha"]["kwh"] == pytest.approx(31500 / 3.6e6)
    assert hosts["beta"]["kwh"] == pytest.approx(7200 / 3.6e6)
    assert body["total_kwh"] == pytest.approx(38700 / 3.6e6)
    assert body["total_cost"] == pytest.approx(38700 / 3.6e6 * 0.5)


async def test_energy_counts_the_energy_up_to_each_reading_inside_the_range(energy_client):
    body = await get_json(energy_client, f"/api/v1/energy?from={at(1)}&to={at(4)}&host=alpha")
    gpus = {g["gpu_uuid"]: g for g in body["gpus"]}
    assert set(gpus) == {"E0", "E1"}
    # readings 1, 2, 3, each against the one before it (reading 0 is before the range)
    assert gpus["E0"]["kwh"] == pytest.approx(7500 / 3.6e6)  # 6000 + 500 (reset) + 1000
    assert gpus["E1"]["kwh"] == pytest.approx(21000 / 3.6e6)  # 150 x 60 + 200 x 60


async def test_energy_of_consecutive_ranges_adds_up_to_their_union_and_the_view(
    energy_client, tmp_path
):
    async def kwh(from_k: float, to_k: float) -> dict[str, float | None]:
        body = await get_json(energy_client, f"/api/v1/energy?from={at(from_k)}&to={at(to_k)}")
        return {g["gpu_uuid"]: g["kwh"] for g in body["gpus"]}

    whole, first, second = await kwh(0, 7), await kwh(0, 3), await kwh(3, 7)
    assert second["E1"] is None  # its one reading there is after a gap: power says nothing
    for uuid in ("E0", "E1"):  # a bill per range must not lose the energy across its edges
        assert (first[uuid] or 0.0) + (second[uuid] or 0.0) == pytest.approx(whole[uuid])
    conn = sqlite3.connect(tmp_path / "db")
    view = dict(
        conn.execute(
            "SELECT gpu_uuid, sum(delta_j) FROM energy WHERE ts >= ? AND ts < ? GROUP BY gpu_uuid",
            (at(3), at(7)),
        ).fetchall()
    )
    conn.close()
    assert second["E0"] == pytest.approx(view["E0"] / 3.6e6)
    assert view["E1"] is None


async def test_energy_without_a_price_has_no_cost(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    write(path, energy_ticks())
    client = await aiohttp_client(create_app(make_config(path)))
    body = await get_json(client, f"/api/v1/energy?from={at(0)}&to={at(7)}")
    assert body["price_per_kwh"] is None and body["total_cost"] is None
    assert body["total_kwh"] == pytest.approx(38700 / 3.6e6)


async def test_bad_energy_parameters_are_refused_and_unknown_hosts_not_found(energy_client):
    assert (await get_json(energy_client, "/api/v1/energy?from=9&to=3", 400))["error"]
    assert (await get_json(energy_client, "/api/v1/energy?host=", 400))["error"]
    assert (await get_json(energy_client, "/api/v1/energy?gpu=E0", 400))["error"]
    assert (await get_json(energy_client, "/api/v1/energy?host=gamma", 404))["error"]


# -- idle but allocated ----------------------------------------------------------------------
# PCW_IDLE_AFTER_S=300, PCW_IDLE_UTIL_PCT=5. I0 is busy on ticks 0-1, then under 5% from tick 2
# on while bob's process holds 4 GiB: flagged once the run spans 300 s, at tick 7.
# I1: under 5% but nobody on it. I2: list unknown, 40% of memory used. I3: list unknown, 0.5%.


def idle_tick(k: int) -> Tick:
    busy = k < 2
    return host_tick(
        "alpha",
        k,
        [
            GpuReading(
                index=0,
                uuid="I0",
                name="H100",
                util_gpu_pct=60 if busy else 2,
                processes=[proc(3, 4, "bob", "notebook")],
            ),
            GpuReading(index=1, uuid="I1", name="H100", util_gpu_pct=0, processes=[]),
            GpuReading(
                index=2,
                uuid="I2",
                name="H100",
                util_gpu_pct=1,
                mem_used_bytes=40 * GIB,
                mem_total_bytes=100 * GIB,
            ),
            GpuReading(
                index=3,
                uuid="I3",
                name="H100",
                util_gpu_pct=1,
                mem_used_bytes=GIB // 2,
                mem_total_bytes=100 * GIB,
            ),
        ],
    )


async def idle_flags(aiohttp_client, path: Path) -> dict:
    config = make_config(path, PCW_IDLE_AFTER_S="300", PCW_IDLE_UTIL_PCT="5")
    client = await aiohttp_client(create_app(config))
    body = await get_json(client, "/api/v1/gpus")
    assert (body["idle_util_pct"], body["idle_after_s"]) == (5.0, 300.0)
    return {gpu["gpu_uuid"]: gpu for gpu in body["gpus"]}


async def test_a_gpu_is_flagged_idle_after_the_duration_and_not_before(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    write(path, [idle_tick(k) for k in range(7)])  # the run spans ticks 2-6: 240 s
    gpus = await idle_flags(aiohttp_client, path)
    assert gpus["I0"]["idle"] is None
    assert [p["pid"] for p in gpus["I0"]["processes"]] == [3]
    assert gpus["I0"]["mig_devices"] == []
    write(path, [idle_tick(7)])  # 300 s
    gpus = await idle_flags(aiohttp_client, path)
    idle = gpus["I0"]["idle"]
    assert idle["since_ts"] == at(2)
    assert [(p["pid"], p["user"]) for p in idle["processes"]] == [(3, "bob")]
    assert gpus["I1"]["idle"] is None  # nobody holds it
    assert gpus["I1"]["processes"] == []
    assert gpus["I2"]["idle"] == {"since_ts": at(0), "processes": []}  # memory, list unknown
    assert gpus["I2"]["processes"] is None
    assert gpus["I3"]["idle"] is None  # under 1% of its memory


async def test_a_busy_tick_ends_the_idle_run(aiohttp_client, tmp_path):
    path = tmp_path / "db"
    ticks = [idle_tick(k) for k in range(12)]
    busy = ticks[10].gpus[0]
    ticks[10] = host_tick("alpha", 10, [GpuReading(**{**_fields(busy), "util_gpu_pct": 90})])
    write(path, ticks)
    gpus = await idle_flags(aiohttp_client, path)
    assert gpus["I0"]["idle"] is None  # the run since tick 11 is 0 s long


def _fields(reading: GpuReading) -> dict:
    return {name: getattr(reading, name) for name in reading.__struct_fields__}
