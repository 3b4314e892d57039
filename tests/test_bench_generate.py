"""The benchmark generator's simulated source names its processes as the sampler would."""

from __future__ import annotations

from services.sampler.simulated_procfs import USERS
from tests.bench.generate import host_ticks

FIRST_TS = 1_700_000_040.0
TICKS = 90  # 90 minutes at 60 s: every GPU runs a job for most of its 20 to 50 minute cycle
SIMULATED_PROGRAMS = ("python", "python3", "blender")


def test_simulated_processes_resolve_against_the_simulators_proc_not_this_machines():
    processes = [
        process
        for tick in host_ticks("benchhost", 4, FIRST_TS, TICKS, 60.0)
        for reading in tick.gpus
        for process in reading.processes or []
    ]
    visible = [process for process in processes if process.visible]
    # Against this machine's /proc the made-up PIDs are missing (not visible) or, worse, name
    # whatever real process holds that PID; against the simulator's own tree, they are its jobs.
    assert len(visible) > len(processes) / 2
    for process in visible:
        assert process.name in SIMULATED_PROGRAMS, process
        assert process.cmdline is not None
        assert process.cmdline.split()[0] in SIMULATED_PROGRAMS, process
        assert process.user in {*USERS.values(), "uid 1004"}, process
        assert process.container_id is None or len(process.container_id) == 64, process
    assert {process.user for process in visible} & {"alice", "bob", "carol"}
