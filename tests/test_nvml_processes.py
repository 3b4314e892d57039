"""Processes and MIG devices read by the NVML reader over SimulatedNvml and its fake /proc."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import zmq

from common.config import load_config
from common.messages import Tick
from services.sampler.nvml import GpuReader, load_nvml, process_resolver
from services.sampler.procfs import ProcResolver
from services.sampler.simulated_nvml import NVMLError_Unknown, SimulatedNvml
from services.sampler.simulated_procfs import USERS, FakeProcTree
from services.sampler.ticks import build_tick
from tests.stack import Stack

# Simulated models by index: 0 GeForce (graphics eval job), 1 H100 (eval job not visible),
# 2 A100, 3 L40S.
GPUS = 4
V3 = ("nvmlDeviceGetComputeRunningProcesses_v3", "nvmlDeviceGetGraphicsRunningProcesses_v3")


def make(nvml_class: type[SimulatedNvml], tmp_path: Path, clock, **kwargs: object):
    tree = FakeProcTree(tmp_path)
    sim = nvml_class(GPUS, host="testhost", clock=clock.wall, proc_tree=tree, **kwargs)
    reader = GpuReader(sim, monotonic=clock.monotonic, resolver=ProcResolver(tree.proc_root))
    reader.start()
    return sim, reader


@pytest.fixture
def sim_reader(tmp_path, clock):
    return make(SimulatedNvml, tmp_path, clock)


def at_position(clock, device, position: float) -> None:
    """Move the clocks forward to where `device` is at `position` (0-1) of a load cycle."""
    now = (clock.wall_s + device.phase_s) % device.period_s / device.period_s
    clock.advance(((position - now) % 1.0) * device.period_s)


def test_a_training_job_starts_grows_and_ends_with_its_gpu_load(sim_reader, clock):
    sim, reader = sim_reader
    device = sim.devices[3]
    at_position(clock, device, 0.8)  # idle

    seen = []
    for _ in range(60):  # a little over one cycle, 1/50 of it per tick
        seen.append(reader.read().gpus[3].processes)
        clock.advance(device.period_s / 50)

    assert all(processes is not None for processes in seen)
    assert seen[0] == []  # idle: nobody, which is not "unknown"
    started = next(i for i, processes in enumerate(seen) if processes)
    train_pid = seen[started][0].pid
    ramp = [p[0].used_mem_bytes for p in seen[started : started + 5]]
    assert ramp == sorted(ramp) and ramp[-1] > 4 * ramp[0]  # it grows with the ramp
    running = [i for i, p in enumerate(seen) if any(x.pid == train_pid for x in p)]
    assert running == list(range(started, running[-1] + 1))  # one run, then it ends
    assert seen[running[-1] + 1] == []
    evaluation = {x.pid for p in seen for x in p if x.pid != train_pid}
    assert len(evaluation) == 1  # an evaluation job came and went in the middle


def test_each_process_carries_what_its_proc_entry_says(sim_reader, clock):
    sim, reader = sim_reader
    at_position(clock, sim.devices[3], 0.45)  # GPU 3 is training and evaluating

    gpu = reader.read().gpus[3]

    expected = sim.processes(sim.devices[3])
    assert [p.pid for p in gpu.processes] == sorted(p.pid for p in expected)
    for process, simulated in zip(
        gpu.processes, sorted(expected, key=lambda p: p.pid), strict=True
    ):
        assert process.visible
        assert process.kind == simulated.kind == "compute"
        assert process.used_mem_bytes == simulated.used_mem_bytes > 0
        assert process.name == simulated.proc.name
        assert process.cmdline == " ".join(simulated.proc.argv)
        assert process.user == USERS.get(simulated.proc.uid, f"uid {simulated.proc.uid}")
        cgroup = simulated.proc.cgroup
        if "docker-" in cgroup or "cri-containerd-" in cgroup:
            assert process.container_id and process.container_id in cgroup
        else:
            assert process.container_id is None
    assert sum(p.used_mem_bytes for p in gpu.processes) <= gpu.mem_used_bytes


def test_a_pid_of_another_namespace_is_listed_as_not_visible(sim_reader, clock):
    sim, reader = sim_reader
    at_position(clock, sim.devices[1], 0.45)

    processes = reader.read().gpus[1].processes

    hidden = [p for p in processes if not p.visible]
    assert len(processes) == 2 and len(hidden) == 1
    (process,) = hidden
    assert process.pid > 0 and process.used_mem_bytes > 0
    assert (process.name, process.cmdline, process.user, process.container_id) == (None,) * 4


def test_a_graphics_process_is_listed_with_its_kind(sim_reader, clock):
    sim, reader = sim_reader
    at_position(clock, sim.devices[0], 0.45)

    processes = reader.read().gpus[0].processes

    assert sorted(p.kind for p in processes) == ["compute", "graphics"]
    assert next(p for p in processes if p.kind == "graphics").name == "blender"


class BothListsNvml(SimulatedNvml):
    """A driver listing the compute processes also as graphics ones (an OpenGL + CUDA app)."""

    def nvmlDeviceGetGraphicsRunningProcesses_v3(self, handle):  # noqa: N802 (pynvml's name)
        compute = self.nvmlDeviceGetComputeRunningProcesses_v3(handle)
        return super().nvmlDeviceGetGraphicsRunningProcesses_v3(handle) + compute


def test_a_process_in_both_lists_is_listed_once_as_compute(tmp_path, clock):
    sim, reader = make(BothListsNvml, tmp_path, clock)
    at_position(clock, sim.devices[3], 0.45)

    processes = reader.read().gpus[3].processes

    simulated = {p.pid: p for p in sim.processes(sim.devices[3])}
    assert sorted(p.pid for p in processes) == sorted(simulated)
    for process in processes:
        assert process.kind == "compute"
        assert process.used_mem_bytes == simulated[process.pid].used_mem_bytes


class CountingNvml(SimulatedNvml):
    """SimulatedNvml counting calls of the process-list functions by name."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)
        self.calls: dict[str, int] = {}

    def _process_list(self, handle, kind, function_name):
        self.calls[function_name] = self.calls.get(function_name, 0) + 1
        return super()._process_list(handle, kind, function_name)


def test_a_driver_without_the_v3_calls_is_read_through_v2_and_not_asked_again(tmp_path, clock):
    sim, reader = make(CountingNvml, tmp_path, clock)
    for name in V3:
        sim.remove_function(name)  # an older driver's library lacks them
    at_position(clock, sim.devices[3], 0.45)

    readings = [reader.read() for _ in range(5)]

    for tick in readings:
        assert len(tick.gpus[3].processes) == 2
        assert all(p.visible and p.name for p in tick.gpus[3].processes)
    for name in V3:
        assert sim.calls[name] == GPUS  # once per GPU, then v2 only
    assert sim.calls["nvmlDeviceGetComputeRunningProcesses_v2"] == 5 * GPUS


class OldPynvml(SimulatedNvml):
    """An older pynvml module: neither the v3 nor the v2 names exist at all."""

    nvmlDeviceGetComputeRunningProcesses_v3 = None  # noqa: N815 (pynvml's name)
    nvmlDeviceGetComputeRunningProcesses_v2 = None  # noqa: N815 (pynvml's name)
    nvmlDeviceGetGraphicsRunningProcesses_v3 = None  # noqa: N815 (pynvml's name)
    nvmlDeviceGetGraphicsRunningProcesses_v2 = None  # noqa: N815 (pynvml's name)


def test_an_older_pynvml_is_read_through_the_unversioned_calls(tmp_path, clock):
    sim, reader = make(OldPynvml, tmp_path, clock)
    at_position(clock, sim.devices[0], 0.45)

    processes = reader.read().gpus[0].processes

    assert sorted(p.kind for p in processes) == ["compute", "graphics"]


class UnknownListNvml(SimulatedNvml):
    """A driver whose compute list fails on GPU 3 with an unknown error."""

    def _process_list(self, handle, kind, function_name):
        if handle is self.devices[3] and kind == "compute":
            raise NVMLError_Unknown()
        return super()._process_list(handle, kind, function_name)


def test_a_process_list_that_cannot_be_read_is_unknown_not_empty(tmp_path, clock, caplog):
    sim, reader = make(UnknownListNvml, tmp_path, clock)
    at_position(clock, sim.devices[3], 0.45)
    caplog.set_level(logging.WARNING)

    readings = [reader.read() for _ in range(4)]

    for tick in readings:
        gpu = tick.gpus[3]
        assert gpu.processes is None  # unknown this tick
        assert gpu.error is None and gpu.util_gpu_pct is not None and gpu.mem_used_bytes
        assert tick.gpus[2].processes is not None  # the other GPUs go on
    logged = [r for r in caplog.records if "compute processes not available" in r.getMessage()]
    assert len(logged) == 1


def test_graphics_not_supported_leaves_the_compute_processes(sim_reader, clock):
    sim, reader = sim_reader
    for name in ("_v3", "_v2", ""):
        sim.fail_metric(3, f"nvmlDeviceGetGraphicsRunningProcesses{name}")
    at_position(clock, sim.devices[3], 0.45)

    processes = reader.read().gpus[3].processes

    assert [p.kind for p in processes] == ["compute", "compute"]


class NoMemoryNvml(SimulatedNvml):
    """A driver that cannot tell processes' memory (as under Windows WDDM)."""

    def _process_list(self, handle, kind, function_name):
        entries = super()._process_list(handle, kind, function_name)
        for entry in entries:
            entry.usedGpuMemory = None
        return entries


def test_memory_that_nvml_cannot_tell_is_null_not_zero(tmp_path, clock):
    sim, reader = make(NoMemoryNvml, tmp_path, clock)
    at_position(clock, sim.devices[3], 0.45)

    processes = reader.read().gpus[3].processes

    assert len(processes) == 2 and all(p.used_mem_bytes is None for p in processes)


def test_a_mig_gpu_lists_its_mig_devices_with_utilization_not_available(tmp_path, clock):
    sim, reader = make(SimulatedNvml, tmp_path, clock, mig_gpus=(2,))
    mig_devices = sim.devices[2].mig_devices
    listed = 0

    for _ in range(6):  # whatever each MIG device's own job is doing
        tick = reader.read()
        gpu = tick.gpus[2]
        assert [m.index for m in gpu.mig_devices] == [0, 1, 3]  # empty slots skipped
        assert [m.uuid for m in gpu.mig_devices] == [m.uuid for m in mig_devices]
        assert [m.name.rsplit(" ", 1)[1] for m in gpu.mig_devices] == [
            "1g.5gb",
            "2g.10gb",
            "3g.20gb",
        ]
        for device in gpu.mig_devices:
            assert device.uuid.startswith("MIG-")
            assert device.util_gpu_pct is None  # n/a, never 0
            assert 0 <= device.mem_used_bytes <= device.mem_total_bytes
        assert gpu.util_gpu_pct is None and gpu.util_mem_pct is None  # the parent's too
        assert gpu.mem_total_bytes == sim.devices[2].model.mem_total_bytes
        # the whole GPU's list needs privileges under MIG; the MIG devices' lists give them
        assert gpu.processes is not None
        assert sorted(p.pid for p in gpu.processes) == sorted(
            p.pid for p in sim.processes(sim.devices[2])
        )
        assert all(other.mig_devices == [] for other in tick.gpus if other.index != 2)
        listed += len(gpu.processes)
        clock.advance(sim.devices[2].period_s / 6)
    assert listed > 0


def test_processes_and_mig_devices_travel_in_the_tick(tmp_path, clock):
    sim, reader = make(SimulatedNvml, tmp_path, clock, mig_gpus=(1,), process_names=("<b>x</b>",))
    at_position(clock, sim.devices[0], 0.45)

    tick = build_tick(reader.read(), "testhost", "s1", 0, clock.wall_s, 60.0)
    decoded = Tick.from_frames(tick.to_frames())

    assert decoded == tick
    (train,) = [p for p in decoded.gpus[0].processes if p.kind == "compute"]
    assert train.name == "<b>x</b>"  # as text, exactly
    assert train.cmdline == "<b>x</b> --gpu 0"
    assert len(decoded.gpus[1].mig_devices) == 3


def test_the_simulated_source_resolves_in_its_own_proc_tree_unless_told_otherwise(tmp_path):
    config = load_config({"PCW_SOURCE": "simulated", "PCW_HOST_NAME": "h"})
    nvml = load_nvml(config)
    resolver = process_resolver(config, nvml)
    assert resolver.proc_root != Path("/proc")  # its made-up PIDs never name real processes
    assert (resolver.proc_root.parent / "etc" / "passwd").is_file()

    config = load_config({"PCW_SOURCE": "simulated", "PCW_PROC_ROOT": str(tmp_path)})
    nvml = load_nvml(config)
    assert nvml.proc_tree is None
    assert process_resolver(config, nvml).proc_root == tmp_path

    config = load_config({"PCW_SOURCE": "nvml", "PCW_PROC_ROOT": str(tmp_path)})
    assert process_resolver(config, object()).proc_root == tmp_path


def test_a_real_sampler_publishes_resolved_processes_and_cleans_its_proc_tree(
    tmp_path, zmq_context
):
    env = {
        "PCW_SIM_GPUS": "8",
        "PCW_SIM_MIG_GPUS": "2",
        "PCW_SIM_PROCESS_NAMES": ";".join(["<b>x</b>"] * 8),
        "TMPDIR": str(tmp_path),
    }
    with Stack(tmp_path, env, supervised=False, programs=("sampler",)) as stack:
        socket = zmq_context.socket(zmq.SUB)
        socket.setsockopt(zmq.LINGER, 0)
        socket.setsockopt(zmq.SUBSCRIBE, b"")
        socket.connect(stack.env["PCW_PUB_ENDPOINT"])
        assert socket.poll(30_000), stack.logs()
        tick = Tick.from_frames(socket.recv_multipart())
        assert list(tmp_path.glob("pcw-sim-proc-*/proc"))  # its fake /proc, in TMPDIR
        assert stack.stop("sampler") == 0

    assert all(gpu.processes is not None for gpu in tick.gpus)
    processes = [p for gpu in tick.gpus for p in gpu.processes]
    visible = [p for p in processes if p.visible]
    assert all(p.user in (*USERS.values(), "uid 1004") for p in visible)
    # each GPU trains 70% of its own cycle: 7 of them idle at once is a 1-in-4,600 chance
    trainers = [p for p in visible if p.cmdline.startswith("<b>x</b> --gpu ")]
    assert trainers and all(p.name == "<b>x</b>" for p in trainers)
    assert len(tick.gpus[2].mig_devices) == 3
    assert not list(tmp_path.glob("pcw-sim-proc-*"))  # removed when the sampler stopped
