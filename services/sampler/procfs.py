"""Resolve a PID from NVML's process lists to its name, command line, user and container.

Everything comes from a proc root (`/proc`, or a host's `/proc` mounted elsewhere, PCW_PROC_ROOT):

- name: `<pid>/comm` (15 characters kept by the kernel; when cut, the base name of the command's
  first word if it starts with it, as `ps` and psutil do);
- command line: `<pid>/cmdline`, NULs as spaces, cut to the codec's 256 characters;
- user: the real UID of `<pid>/status`, named through `<proc_root>/../etc/passwd` (a host's `/`
  mounted into a container), else this system's user database, else "uid <n>";
- container id: from `<pid>/cgroup` (v1 and v2 layouts of Docker, containerd, CRI-O, Kubernetes,
  Podman); `container_name` stays None: only the runtime's API (root on the host) knows it;
- a PID not in the proc root (no `pid: host`) is visible=False with every field None, shown,
  never dropped; unreadable files (`hidepid=1`, another user) leave those fields None;
- cached per (pid, start time): one read of `<pid>/stat` per process per tick, and a reused PID
  is resolved afresh.
"""

from __future__ import annotations

import logging
import os
import pwd
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

TEXT_CHARS = 256  # the codec's limit on text
CONTAINER_ID_CHARS = 128
COMM_CHARS = 15  # TASK_COMM_LEN - 1: the kernel cuts longer names
CACHE_ENTRIES = 4096
READ_BYTES = 64 * 1024  # a command line longer than this is cut anyway

# A cgroup path component that names a container: docker-<id>.scope, cri-containerd-<id>.scope,
# crio-<id>.scope, libpod-<id>.scope (systemd driver), containerd's "...:cri-containerd:<id>",
# or a bare <id> (cgroupfs driver: /docker/<id>, /kubepods/burstable/pod<uid>/<id>).
_CONTAINER_COMPONENT = re.compile(
    r"^(?:(?:docker|cri-containerd|crio|libpod|containerd)-|.*:(?:cri-containerd|crio|docker):)?"
    r"(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)


@dataclass(frozen=True)
class ProcessInfo:
    """What the proc root tells about one process; None where it cannot be read."""

    visible: bool
    name: str | None = None
    cmdline: str | None = None
    user: str | None = None
    container_id: str | None = None
    container_name: str | None = None


NOT_VISIBLE = ProcessInfo(visible=False)


class _GoneError(Exception):
    """The process is not (or no longer) in the proc root."""


def _read(path: Path) -> bytes:
    """Return a /proc file's bytes (at most READ_BYTES); raise OSError as the kernel does."""
    with open(path, "rb", buffering=0) as file:
        return file.read(READ_BYTES)


def start_time(stat: bytes) -> int | None:
    """Return the start time (field 22 of /proc/<pid>/stat, clock ticks since boot), or None."""
    # the name in field 2 is in parentheses and may itself hold spaces and parentheses
    fields = stat[stat.rfind(b")") + 2 :].split()
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_name(comm: bytes, cmdline: str | None) -> str | None:
    """Return the name from comm, completed from the command line where the kernel cut it."""
    name = comm.decode(errors="replace").rstrip("\n")
    if not name:
        return None
    if len(name) >= COMM_CHARS and cmdline:
        program = os.path.basename(cmdline.split(" ", 1)[0])
        if program.startswith(name):
            name = program
    return name[:TEXT_CHARS]


def command_line(raw: bytes) -> str | None:
    """Return the command line with NULs as spaces, cut to TEXT_CHARS; None when empty."""
    text = raw.rstrip(b"\0").replace(b"\0", b" ").decode(errors="replace").strip()
    return text[:TEXT_CHARS] or None


def real_uid(status: bytes) -> int | None:
    """Return the real UID from /proc/<pid>/status, or None."""
    for line in status.splitlines():
        if line.startswith(b"Uid:"):
            fields = line.split()
            return int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else None
    return None


def container_id(cgroup: bytes) -> str | None:
    """Return the innermost container id in /proc/<pid>/cgroup (v1 or v2), or None."""
    found: str | None = None
    # the v2 line (hierarchy 0) comes last in a hybrid layout; any line that names one will do
    for line in cgroup.decode(errors="replace").splitlines():
        path = line.split(":", 2)[-1]
        for component in reversed(path.split("/")):
            match = _CONTAINER_COMPONENT.match(component)
            if match:
                found = match.group("id")
                break
        if found and line.startswith("0::"):
            break
    return found[:CONTAINER_ID_CHARS] if found else None


class UserNames:
    """Name UIDs from a passwd file (re-read when it changes), else the user database."""

    def __init__(self, passwd: Path) -> None:
        self._passwd = passwd
        self._mtime_ns: int | None = None
        self._names: dict[int, str] = {}

    def name(self, uid: int) -> str:
        """Return the user name of uid, or "uid <n>" when no user database knows it."""
        names = self._file_names()
        if names is not None:
            return names.get(uid, f"uid {uid}")[:TEXT_CHARS]
        try:
            return pwd.getpwuid(uid).pw_name[:TEXT_CHARS]
        except KeyError:
            return f"uid {uid}"

    def _file_names(self) -> dict[int, str] | None:
        try:
            mtime_ns = self._passwd.stat().st_mtime_ns
        except OSError:
            return None
        if mtime_ns != self._mtime_ns:
            try:
                text = self._passwd.read_text(errors="replace")
            except OSError as error:
                log.warning("cannot read %s (%s); users named by this system", self._passwd, error)
                return None
            self._names = {}
            for line in text.splitlines():
                fields = line.split(":")
                if len(fields) >= 3 and fields[2].isdigit():
                    self._names.setdefault(int(fields[2]), fields[0])
            self._mtime_ns = mtime_ns
        return self._names


class ProcResolver:
    """Resolve PIDs through one proc root, caching each process by (pid, start time)."""

    def __init__(self, proc_root: Path, cache_entries: int = CACHE_ENTRIES) -> None:
        self.proc_root = proc_root
        self._users = UserNames(proc_root.parent / "etc" / "passwd")
        self._cache: OrderedDict[tuple[int, int], ProcessInfo] = OrderedDict()
        self._cache_entries = cache_entries
        self._logged: set[str] = set()

    def resolve(self, pid: int) -> ProcessInfo:
        """Return what the proc root tells about pid; never raises for a file it cannot read."""
        folder = self.proc_root / str(pid)
        try:
            started = start_time(_read(folder / "stat"))
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            return NOT_VISIBLE
        except OSError as error:
            self._log_once("stat", error)
            started = None
        if started is None:  # cannot tell this process from a later one of the same PID
            return self._read_info(folder)
        key = (pid, started)
        info = self._cache.get(key)
        if info is None:
            info = self._read_info(folder)
            if not info.visible:  # it ended between the two reads: nothing to remember
                return info
            self._cache[key] = info
            if len(self._cache) > self._cache_entries:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        return info

    def _read_info(self, folder: Path) -> ProcessInfo:
        try:
            comm = self._optional(folder / "comm")
            raw_cmdline = self._optional(folder / "cmdline")
            status = self._optional(folder / "status")
            cgroup = self._optional(folder / "cgroup")
        except _GoneError:
            return NOT_VISIBLE
        cmdline = command_line(raw_cmdline) if raw_cmdline is not None else None
        uid = real_uid(status) if status is not None else None
        return ProcessInfo(
            visible=True,
            name=process_name(comm, cmdline) if comm is not None else None,
            cmdline=cmdline,
            user=self._users.name(uid) if uid is not None else None,
            container_id=container_id(cgroup) if cgroup is not None else None,
        )

    def _optional(self, path: Path) -> bytes | None:
        """Return the file's bytes, None when it cannot be read; raise _GoneError if it is gone."""
        try:
            return _read(path)
        except (FileNotFoundError, NotADirectoryError, ProcessLookupError):
            raise _GoneError from None
        except OSError as error:
            self._log_once(path.name, error)
            return None

    def _log_once(self, file_name: str, error: OSError) -> None:
        if file_name not in self._logged:
            self._logged.add(file_name)
            log.warning(
                "cannot read /proc/<pid>/%s under %s (%s); those fields are null",
                file_name,
                self.proc_root,
                error,
            )
