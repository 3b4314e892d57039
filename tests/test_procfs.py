"""Resolving NVML's PIDs through a proc root: fake /proc trees built on tmp paths."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.sampler.procfs import NOT_VISIBLE, ProcessInfo, ProcResolver

DOCKER_ID = "4f1c" + "a" * 60
CONTAINERD_ID = "9b2e" + "c" * 60
POD = "pod0d5b2f7e_1c3a_4f52_9a0e_2b8d7c6e5f41"

CGROUPS = {
    "docker, cgroup v2": (f"0::/system.slice/docker-{DOCKER_ID}.scope\n", DOCKER_ID),
    "docker, cgroup v1": (
        f"12:memory:/docker/{DOCKER_ID}\n11:cpu,cpuacct:/docker/{DOCKER_ID}\n1:name=systemd:/docker/{DOCKER_ID}\n",
        DOCKER_ID,
    ),
    "containerd under kubernetes, cgroup v2": (
        f"0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-{POD}.slice/"
        f"cri-containerd-{CONTAINERD_ID}.scope\n",
        CONTAINERD_ID,
    ),
    "containerd under kubernetes, cgroup v1 (cgroupfs)": (
        f"10:memory:/kubepods/burstable/pod0d5b2f7e-1c3a-4f52-9a0e-2b8d7c6e5f41/{CONTAINERD_ID}\n",
        CONTAINERD_ID,
    ),
    "containerd, cgroup v1 (systemd driver)": (
        f"5:pids:/system.slice/containerd.service/kubepods-besteffort-{POD}.slice:cri-containerd:"
        f"{CONTAINERD_ID}\n",
        CONTAINERD_ID,
    ),
    "docker in docker: the innermost": (
        f"0::/docker/{DOCKER_ID}/docker/{CONTAINERD_ID}\n",
        CONTAINERD_ID,
    ),
    "a login session, cgroup v2": ("0::/user.slice/user-1001.slice/session-4.scope\n", None),
    "no container, cgroup v1": ("12:memory:/user.slice\n1:name=systemd:/user.slice\n", None),
}


def write_process(
    proc: Path,
    pid: int,
    *,
    comm: str = "python",
    argv: tuple[str, ...] = ("python", "train.py"),
    uid: int = 1001,
    cgroup: str = "0::/user.slice\n",
    start_ticks: int = 12345,
) -> Path:
    """Write the files the resolver reads for one process, as the kernel lays them out."""
    folder = proc / str(pid)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "comm").write_text(comm + "\n")
    (folder / "cmdline").write_bytes(b"".join(a.encode() + b"\0" for a in argv))
    fields = f"S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 {start_ticks} 0 0"
    (folder / "stat").write_text(f"{pid} ({comm}) {fields}\n")
    (folder / "status").write_text(f"Name:\t{comm}\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
    (folder / "cgroup").write_text(cgroup)
    return folder


@pytest.fixture
def root(tmp_path: Path) -> Path:
    """A host root with proc/ and etc/passwd, as a host's / mounted into a container."""
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc" / "passwd").write_text(
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1001:1001::/home/alice:/bin/sh\n"
    )
    (tmp_path / "proc").mkdir()
    return tmp_path


@pytest.fixture
def resolver(root: Path) -> ProcResolver:
    return ProcResolver(root / "proc")


def test_a_visible_process_has_name_command_line_user_and_no_container(root, resolver):
    write_process(root / "proc", 4242, argv=("python", "train.py", "--lr", "0.1"))

    info = resolver.resolve(4242)

    assert info == ProcessInfo(
        visible=True,
        name="python",
        cmdline="python train.py --lr 0.1",
        user="alice",
        container_id=None,
        container_name=None,
    )


@pytest.mark.parametrize("layout", CGROUPS)
def test_the_container_id_is_read_from_each_cgroup_layout(root, resolver, layout):
    cgroup, expected = CGROUPS[layout]
    write_process(root / "proc", 77, cgroup=cgroup)

    info = resolver.resolve(77)

    assert info.visible
    assert info.container_id == expected
    assert info.container_name is None  # no cgroup path carries it: never guessed


def test_a_pid_not_in_the_proc_root_is_not_visible_and_has_nothing_made_up(resolver):
    assert resolver.resolve(31337) == NOT_VISIBLE
    assert ProcessInfo(visible=False) == NOT_VISIBLE  # every other field None


def test_a_command_line_is_cut_to_256_characters(root, resolver):
    write_process(root / "proc", 5, argv=("python", "-c", "x" * 5000))

    info = resolver.resolve(5)

    assert len(info.cmdline) == 256
    assert info.cmdline.startswith("python -c xxx")


def test_a_name_cut_by_the_kernel_is_completed_from_the_command_line(root, resolver):
    write_process(root / "proc", 6, comm="tritonserver_ma", argv=("/opt/tritonserver_main", "-v"))

    assert resolver.resolve(6).name == "tritonserver_main"


def test_a_uid_unknown_to_the_passwd_file_is_shown_as_a_number(root, resolver):
    write_process(root / "proc", 8, uid=4321)

    assert resolver.resolve(8).user == "uid 4321"


def test_without_a_passwd_file_beside_the_proc_root_this_system_names_users(tmp_path):
    write_process(tmp_path / "proc", 9, uid=0)

    assert ProcResolver(tmp_path / "proc").resolve(9).user == "root"


def test_a_reused_pid_is_resolved_afresh_but_a_running_one_is_not_reread(root, resolver):
    proc = root / "proc"
    write_process(proc, 100, comm="python", argv=("python", "a.py"), start_ticks=500)
    assert resolver.resolve(100).cmdline == "python a.py"

    # the same process changing its files is not re-read: it is cached by (pid, start time)
    (proc / "100" / "cmdline").write_bytes(b"changed\0")
    assert resolver.resolve(100).cmdline == "python a.py"

    # the PID is reused by a new process: another start time
    write_process(proc, 100, comm="bash", argv=("bash",), uid=0, start_ticks=900)
    info = resolver.resolve(100)
    assert (info.name, info.cmdline, info.user) == ("bash", "bash", "root")


def test_the_cache_is_bounded(root):
    resolver = ProcResolver(root / "proc", cache_entries=3)
    for pid in range(10, 20):
        write_process(root / "proc", pid)
        resolver.resolve(pid)

    assert len(resolver._cache) == 3


def test_a_process_that_ended_is_not_visible_any_more(root, resolver):
    folder = write_process(root / "proc", 55)
    assert resolver.resolve(55).visible
    for file in folder.iterdir():
        file.unlink()
    folder.rmdir()

    assert resolver.resolve(55) == NOT_VISIBLE


# -- no access --------------------------------------------------------------------------------


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A root that an unprivileged user can traverse (pytest's tmp_path is private to root)."""
    with tempfile.TemporaryDirectory(prefix="pcw-procfs-") as folder:
        path = Path(folder)
        path.chmod(0o755)
        (path / "proc").mkdir(mode=0o755)
        yield path


def resolve_without_privileges(proc_root: Path, pid: int) -> dict[str, object]:
    """Resolve pid in a child process that the kernel checks file permissions for.

    Root bypasses file modes, so the child gives up root for `nobody` first; run as another
    user it stays that user, whom the modes already stop.
    """
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover (runs in the child)
        try:
            os.close(reading)
            if os.geteuid() == 0:
                os.setgid(65534)
                os.setuid(65534)
            info = ProcResolver(proc_root).resolve(pid)
            os.write(writing, json.dumps(info.__dict__).encode())
        finally:
            os._exit(0)
    os.close(writing)
    with os.fdopen(reading, "rb") as pipe:
        answer = pipe.read()
    os.waitpid(child, 0)
    return json.loads(answer)


def test_a_process_whose_files_cannot_be_read_is_visible_with_those_fields_unknown(shared_root):
    # as under hidepid=1 or for another user's process: the folder is there, its files are not
    folder = write_process(shared_root / "proc", 4242, cgroup=f"0::/docker/{DOCKER_ID}\n")
    folder.chmod(0o755)
    for name in ("cmdline", "status", "cgroup"):
        (folder / name).chmod(0o400)  # root's alone
    for name in ("comm", "stat"):
        (folder / name).chmod(0o444)

    info = resolve_without_privileges(shared_root / "proc", 4242)

    assert info == {
        "visible": True,
        "name": "python",
        "cmdline": None,
        "user": None,
        "container_id": None,
        "container_name": None,
    }


def test_a_process_with_nothing_readable_is_still_visible(shared_root):
    folder = write_process(shared_root / "proc", 4243)
    folder.chmod(0o755)
    for file in folder.iterdir():
        file.chmod(0o400)

    info = resolve_without_privileges(shared_root / "proc", 4243)

    assert info["visible"] is True
    assert [info[k] for k in ("name", "cmdline", "user", "container_id")] == [None] * 4
