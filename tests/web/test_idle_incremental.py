"""The idle-and-allocated run read from a remembered mark equals the one read over the whole run.

Files grow batch by batch through the writer's own Store (random idle, busy, errored readings,
known, empty and unknown process lists, uneven tick spacing); after each batch the web Store is
asked both ways: from the marks left by the previous calls, and walking back over everything.
"""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from common.messages import GpuProcess, GpuReading, Tick
from services.web import idle_reads
from services.web.idle_reads import IDLE_REFRESH_S, IdleRuns, idle_job
from services.web.store import Store
from services.writer.store import Store as WriterStore
from tests.web.idle_oracle import whole_run_job

T0 = 1_700_000_040.0
INTERVAL_S = 10.0
UTIL_PCT = 5.0
GIB = 1 << 30
GPUS = 2


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


def reading(index: int, util: int | None, error: bool, mem_gib: int, procs: str) -> GpuReading:
    """Return one GPU's reading; procs: "unknown", "none", "held", "zero" or "unsaid" memory."""
    processes = {
        "unknown": None,
        "none": [],
        "held": [GpuProcess(pid=7, used_mem_bytes=mem_gib * GIB or GIB, user="carol")],
        "zero": [GpuProcess(pid=8, used_mem_bytes=0, user="dave")],
        "unsaid": [GpuProcess(pid=9, used_mem_bytes=None, user="erin")],
    }[procs]
    return GpuReading(
        index=index,
        uuid=f"GPU-{index}",
        name="NVIDIA H100",
        error="GPU is lost" if error else None,
        util_gpu_pct=None if error else util,
        mem_used_bytes=None if error else mem_gib * GIB,
        mem_total_bytes=None if error else 80 * GIB,
        processes=None if error else processes,
    )


# One tick: its spacing after the previous one (in intervals: some early, some late, some gaps)
# and each GPU's (util, errored, memory, process list).
gpu_states = st.tuples(
    st.sampled_from([0, 0, 0, 0, 3, 60, None]),
    st.integers(0, 15).map(lambda n: n == 0),
    st.sampled_from([0, 40, 40]),
    st.sampled_from(["unknown", "none", "held", "held", "held", "zero", "unsaid"]),
)
ticks = st.tuples(
    st.sampled_from([0.6, 1.0, 1.0, 1.0, 1.4, 3.0]),
    st.lists(gpu_states, min_size=GPUS, max_size=GPUS),
)
batches = st.lists(st.lists(ticks, min_size=1, max_size=12), min_size=1, max_size=8)


def build(start_ts: float, planned: list) -> tuple[list[Tick], float]:
    """Return the ticks of one batch after start_ts, and the last one's time."""
    made, ts = [], start_ts
    for spacing, states in planned:
        ts += spacing * INTERVAL_S
        gpus = [reading(index, *state) for index, state in enumerate(states)]
        made.append(
            Tick(host="h", sampler_id="s", seq=len(made), ts=ts, interval_s=INTERVAL_S, gpus=gpus)
        )
    return made, ts


async def both_ways(store: Store, runs: IdleRuns) -> tuple[list, list]:
    """Return each GPU's (uuid, run start) from the marks, and walking back over everything."""
    marked = await store.call(idle_job(UTIL_PCT, runs), [])
    whole = await store.call(whole_run_job(UTIL_PCT), [])
    return (
        [(item.gpu.gpu_uuid, item.run_since_ts) for item in marked],
        [(item.gpu.gpu_uuid, item.run_since_ts) for item in whole],
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batches)
def test_the_run_from_the_marks_equals_the_run_over_everything(planned_batches):
    async def scenario(path: Path) -> None:
        writer = WriterStore(path)
        store = Store(path)
        runs = IdleRuns(
            clock=Clock()
        )  # never refreshed: every answer after the first is from a mark
        ts = T0
        try:
            for planned in planned_batches:
                batch, ts = build(ts, planned)
                writer.write(batch)
                for _ in range(2):  # a second call with nothing new changes nothing
                    marked, whole = await both_ways(store, runs)
                    assert marked == whole
        finally:
            writer.close()
            await store.close()

    with tempfile.TemporaryDirectory() as directory:
        asyncio.run(scenario(Path(directory) / "db"))


def held_tick(ts: float, procs: str, mem_gib: int = 40) -> Tick:
    """Return a tick of one idle GPU with the given process list (see reading)."""
    gpus = [reading(0, 0, False, mem_gib, procs)]
    return Tick(host="h", sampler_id="s", seq=int(ts), ts=ts, interval_s=INTERVAL_S, gpus=gpus)


async def answers(path: Path, runs: IdleRuns) -> tuple[list, list]:
    store = Store(path)
    try:
        return await both_ways(store, runs)
    finally:
        await store.close()


def test_a_reading_whose_list_a_later_tick_makes_known_is_read_again(tmp_path):
    """An unknown-list tick with no memory breaks the run, until the next known tick, 1.2
    intervals after the one before it, extends the spans over it: then it is inside the run."""
    path, runs = tmp_path / "db", IdleRuns(clock=Clock())
    writer = WriterStore(path)
    writer.write([held_tick(T0, "held"), held_tick(T0 + 6, "unknown", mem_gib=0)])
    marked, whole = asyncio.run(answers(path, runs))
    assert marked == whole == [("GPU-0", None)]  # the newest reading holds no memory
    writer.write([held_tick(T0 + 12, "held")])
    writer.close()
    marked, whole = asyncio.run(answers(path, runs))
    assert marked == whole == [("GPU-0", T0)]


def test_replayed_and_purged_readings_are_taken_in_when_the_marks_are_dropped(tmp_path):
    path, clock = tmp_path / "db", Clock()
    runs = IdleRuns(clock=clock)
    writer = WriterStore(path)
    writer.write([held_tick(T0 + k * INTERVAL_S, "held") for k in range(30) if k != 10])
    assert asyncio.run(answers(path, runs)) == ([("GPU-0", T0)], [("GPU-0", T0)])
    busy = reading(0, 90, False, 40, "held")
    replayed = Tick(
        host="h", sampler_id="s", seq=10, ts=T0 + 100, interval_s=INTERVAL_S, gpus=[busy]
    )
    writer.write([replayed])  # a late tick, inside the run, that breaks it
    marked, whole = asyncio.run(answers(path, runs))
    assert whole == [("GPU-0", T0 + 110)]
    assert marked == [("GPU-0", T0)]  # not yet: the mark is younger than the refresh
    clock.now_s += IDLE_REFRESH_S
    marked, whole = asyncio.run(answers(path, runs))
    assert marked == whole == [("GPU-0", T0 + 110)]
    writer.write([held_tick(T0 + 30 * INTERVAL_S, "held")])
    writer.purge(T0 + 200)  # the break goes with the purge: the run begins at the first reading
    writer.close()
    marked, whole = asyncio.run(answers(path, runs))
    assert marked == whole == [("GPU-0", T0 + 200)]


def test_a_run_longer_than_the_walk_bound_shows_since_the_oldest_reading_walked(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(idle_reads, "MAX_RUN_READINGS", 20)
    path, runs = tmp_path / "db", IdleRuns(clock=Clock())
    writer = WriterStore(path)
    writer.write([held_tick(T0 + k * INTERVAL_S, "held") for k in range(100)])
    writer.close()
    marked, whole = asyncio.run(answers(path, runs))
    assert whole == [("GPU-0", T0)]  # the reference walks everything
    # the bound is counted back from the settled reading, two intervals before the newest
    settled_k = 99 - 2
    assert marked == [("GPU-0", T0 + (settled_k - 19) * INTERVAL_S)]
