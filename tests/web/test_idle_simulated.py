"""A simulated idle-but-allocated GPU (PCW_SIM_IDLE_GPUS) is flagged after the duration only.

The simulated module is read through the sampler's reader with a clock stepped by hand, its
ticks stored by the writer's own code, and /api/v1/gpus asked after each tick.
"""

from __future__ import annotations

from common.config import load_config
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.simulated_procfs import FakeProcTree
from services.sampler.ticks import build_tick
from services.web.app import create_app
from services.writer.store import Store
from tests.web.conftest import make_config

T0 = 1_700_000_040.0
INTERVAL_S = 10.0
IDLE_AFTER_S = 60.0


class Clock:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = T0

    def __call__(self) -> float:
        return self.now_s


def test_the_setting_names_the_idle_gpus():
    assert load_config({"PCW_SIM_IDLE_GPUS": "3, 1"}).sim_idle_gpus == (1, 3)
    assert load_config({}).sim_idle_gpus == ()


async def test_the_idle_gpu_is_flagged_after_the_duration_and_not_before(aiohttp_client, tmp_path):
    clock = Clock()
    nvml = SimulatedNvml(2, host="lab", clock=clock, idle_gpus=(1,), proc_tree=FakeProcTree())
    reader = GpuReader(nvml)
    reader.start()
    path = tmp_path / "db"
    config = make_config(path, PCW_IDLE_AFTER_S=str(IDLE_AFTER_S), PCW_IDLE_UTIL_PCT="5")
    idle_uuid = nvml.devices[1].uuid
    seen = []
    for seq in range(9):
        clock.now_s = T0 + seq * INTERVAL_S
        tick = build_tick(reader.read(), "lab", "sim", seq, clock.now_s, INTERVAL_S)
        store = Store(path)
        store.write([tick])
        store.close()
        client = await aiohttp_client(create_app(config))
        body = await (await client.get("/api/v1/gpus")).json()
        await client.close()
        [entry] = [gpu for gpu in body["gpus"] if gpu["gpu_uuid"] == idle_uuid]
        assert entry["latest"]["util_gpu_pct"] == 0
        assert entry["latest"]["mem_used_bytes"] > 0.2 * entry["latest"]["mem_total_bytes"]
        [notebook] = entry["processes"]
        assert (notebook["user"], notebook["name"]) == ("carol", "python")
        assert "ipykernel_launcher" in notebook["cmdline"]
        assert notebook["since_ts"] == T0
        seen.append((clock.now_s - T0, entry["idle"]))
    for held_s, idle in seen:
        if held_s < IDLE_AFTER_S:
            assert idle is None, held_s
        else:
            assert idle["since_ts"] == T0, held_s
            assert [(p["pid"], p["user"]) for p in idle["processes"]] == [(9001, "carol")]
    assert [held_s for held_s, idle in seen if idle is not None] == [60.0, 70.0, 80.0]
