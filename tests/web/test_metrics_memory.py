"""GET /metrics: frame buffer free and reserved memory as NVML itself reports them.

NVML's v2 memory struct splits the memory in reserved (by the driver and firmware: 1 GiB on the
simulated H100, as on a real one), used and free, which add up to the total. Free memory is not
total - used: that overstated it by the reserved memory.
"""

from __future__ import annotations

import time

import msgspec
import pytest

from common.messages import Tick
from services.sampler.nvml import GpuReader
from services.sampler.simulated_nvml import SimulatedNvml
from services.sampler.ticks import build_tick
from services.web.app import create_app
from tests.web.conftest import make_config
from tests.web.test_metrics import MIB, dcgm_by_uuid, publish_until_seen, samples, scrape

H100_TOTAL_MIB = 81_559  # what nvidia-smi shows for an H100 80GB HBM3
H100_RESERVED_MIB = 1_024


class V1OnlyNvml(SimulatedNvml):
    """SimulatedNvml of an older driver, whose library lacks the v2 memory struct."""

    def nvmlDeviceGetMemoryInfo(self, handle: object, version: int | None = None) -> object:  # noqa: N802
        if version is not None:
            raise self.NVMLError(13)  # NVML_ERROR_FUNCTION_NOT_FOUND
        return super().nvmlDeviceGetMemoryInfo(handle)


@pytest.fixture
async def client(aiohttp_client, db_path, publisher):
    return await aiohttp_client(create_app(make_config(db_path, PCW_SUBSCRIBE=publisher[1])))


def tick_of(nvml: SimulatedNvml, host: str) -> Tick:
    reader = GpuReader(nvml)
    reader.start()
    try:
        return build_tick(reader.read(), host, f"run-{host}", 1, time.time(), 1.0)
    finally:
        reader.close()


async def test_free_memory_leaves_out_the_reserved_memory_and_reserved_is_sent(client, publisher):
    tick = tick_of(SimulatedNvml(2, host="node-m"), "node-m")
    await publish_until_seen(client.app, publisher[0], tick)
    h100 = tick.gpus[1]
    assert h100.name == "NVIDIA H100 80GB HBM3"

    text = await scrape(client)

    used = dcgm_by_uuid(text, "DCGM_FI_DEV_FB_USED")[h100.uuid]
    free = dcgm_by_uuid(text, "DCGM_FI_DEV_FB_FREE")[h100.uuid]
    reserved = dcgm_by_uuid(text, "DCGM_FI_DEV_FB_RESERVED")[h100.uuid]
    assert reserved == H100_RESERVED_MIB
    assert used == h100.mem_used_bytes // MIB
    assert free == H100_TOTAL_MIB - H100_RESERVED_MIB - used  # not total - used
    assert "# TYPE DCGM_FI_DEV_FB_RESERVED gauge" in text
    assert set(dcgm_by_uuid(text, "DCGM_FI_DEV_FB_RESERVED")) == {gpu.uuid for gpu in tick.gpus}


async def test_a_driver_without_the_v2_struct_sends_v1_free_and_no_reserved(client, publisher):
    nvml = V1OnlyNvml(2, host="node-v1")
    tick = tick_of(nvml, "node-v1")
    await publish_until_seen(client.app, publisher[0], tick)
    h100 = tick.gpus[1]

    text = await scrape(client)

    # the tick carries v1's numbers (used includes the reserved memory: used + free = total)
    # and no reserved figure; the simulated memory moves with time, so compare with the tick
    assert h100.mem_reserved_bytes is None
    assert h100.mem_used_bytes + h100.mem_free_bytes == h100.mem_total_bytes
    assert dcgm_by_uuid(text, "DCGM_FI_DEV_FB_FREE")[h100.uuid] == h100.mem_free_bytes // MIB
    assert dcgm_by_uuid(text, "DCGM_FI_DEV_FB_USED")[h100.uuid] == h100.mem_used_bytes // MIB
    assert samples(text, "DCGM_FI_DEV_FB_RESERVED") == []  # unknown: left out, never 0


async def test_a_tick_of_an_older_sampler_sends_no_free_memory_rather_than_too_much(
    client, publisher
):
    tick = tick_of(SimulatedNvml(2, host="node-old"), "node-old")
    old = msgspec.structs.replace(
        tick,
        gpus=[
            msgspec.structs.replace(gpu, mem_free_bytes=None, mem_reserved_bytes=None)
            for gpu in tick.gpus
        ],
    )
    await publish_until_seen(client.app, publisher[0], old)

    text = await scrape(client)

    assert set(dcgm_by_uuid(text, "DCGM_FI_DEV_FB_USED")) == {gpu.uuid for gpu in tick.gpus}
    assert samples(text, "DCGM_FI_DEV_FB_FREE") == []
    assert samples(text, "DCGM_FI_DEV_FB_RESERVED") == []
