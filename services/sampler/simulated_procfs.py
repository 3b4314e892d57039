"""A fake /proc tree for the simulated GPUs' processes, so that they resolve like real ones.

The simulated NVML module lists PIDs that no real process holds; reading the machine's own
/proc for them would name whatever unrelated process has that PID. Instead the simulated source
writes, for each of its processes as it starts, the files the sampler reads (`comm`, `cmdline`,
`stat`, `status`, `cgroup`) under `<folder>/proc/<pid>/`, removes them when it ends, and writes
`<folder>/etc/passwd` with its users: the sampler then resolves them through its ordinary code,
with PCW_PROC_ROOT pointing at `<folder>/proc`. A process it marks not visible is never written,
as a PID of another PID namespace.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

COMM_CHARS = 15  # the kernel keeps TASK_COMM_LEN - 1 characters of a name

# uid -> name; uid 1004 is left out on purpose: a user the passwd file does not know
USERS = {0: "root", 1001: "alice", 1002: "bob", 1003: "carol"}


@dataclass(frozen=True)
class FakeProcess:
    """What the fake /proc tells about one process."""

    pid: int
    name: str  # the program's name, as the kernel's comm before it is cut
    argv: tuple[str, ...]
    uid: int
    cgroup: str  # the whole /proc/<pid>/cgroup text
    start_ticks: int  # field 22 of stat: clock ticks since boot

    @property
    def comm(self) -> str:
        """Return the name as the kernel keeps it, cut to 15 characters."""
        return self.name[:COMM_CHARS]


def stat_text(process: FakeProcess) -> str:
    """Return /proc/<pid>/stat for process, up to its start time (field 22)."""
    pid = process.pid
    return (
        f"{pid} ({process.comm}) S 1 {pid} {pid} 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 "
        f"{process.start_ticks} 0 0\n"
    )


def status_text(process: FakeProcess) -> str:
    """Return the part of /proc/<pid>/status that names the process and its UIDs."""
    uid = process.uid
    return (
        f"Name:\t{process.comm}\nState:\tS (sleeping)\nTgid:\t{process.pid}\n"
        f"Pid:\t{process.pid}\nPPid:\t1\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
        f"Gid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
    )


class FakeProcTree:
    """Keep `<folder>/proc` holding exactly the processes it is told are running."""

    def __init__(self, folder: Path | None = None) -> None:
        """Write the tree in folder, or in a temporary folder removed when this tree is."""
        self._temporary = None
        if folder is None:
            self._temporary = tempfile.TemporaryDirectory(prefix="pcw-sim-proc-")
            folder = Path(self._temporary.name)
        self.folder = folder
        self.proc_root = folder / "proc"
        self.proc_root.mkdir(parents=True, exist_ok=True)
        passwd = folder / "etc" / "passwd"
        passwd.parent.mkdir(parents=True, exist_ok=True)
        passwd.write_text(
            "".join(f"{name}:x:{uid}:{uid}::/home/{name}:/bin/sh\n" for uid, name in USERS.items())
        )
        self._written: dict[str, dict[int, int]] = {}  # group -> pid -> start ticks

    def sync(self, group: str, processes: list[FakeProcess]) -> None:
        """Make the group's (one GPU's) processes exactly these: write new ones, drop ended."""
        written = self._written.setdefault(group, {})
        running = {process.pid: process for process in processes}
        for pid in [pid for pid in written if pid not in running]:
            shutil.rmtree(self.proc_root / str(pid), ignore_errors=True)
            del written[pid]
        for pid, process in running.items():
            if written.get(pid) != process.start_ticks:  # new, or the PID was reused
                self._write(process)
                written[pid] = process.start_ticks

    def _write(self, process: FakeProcess) -> None:
        folder = self.proc_root / str(process.pid)
        folder.mkdir(exist_ok=True)
        (folder / "comm").write_text(process.comm + "\n")
        (folder / "cmdline").write_bytes(b"".join(arg.encode() + b"\0" for arg in process.argv))
        (folder / "stat").write_text(stat_text(process))
        (folder / "status").write_text(status_text(process))
        (folder / "cgroup").write_text(process.cgroup)
