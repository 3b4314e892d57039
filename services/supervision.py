"""Run inside supervisord: stop the stack on a bad setting, and run the programs as a user expects.

supervisord.conf loads this module as an RPC-interface plugin, the one hook supervisord offers
for code in its own process (it is loaded with the control socket, which this module closes
again as soon as supervisord runs: nothing listens on it afterwards). It does three things:

- A program that exits with status 2 (a bad setting: it has logged one line naming the variable)
  stops the whole stack at once, and supervisord itself then exits with status 2, so that a
  container stops with that status. supervisord would otherwise restart it startretries times,
  then leave it FATAL while supervisord (and the container) stays up doing nothing. Any other
  exit is restarted with supervisord's backoff as before.
- The folder of supervisord's own Python goes first on the programs' PATH, so `python` in
  supervisord.conf is the interpreter supervisord runs on: a venv's supervisord works without
  the venv being activated.
- When supervisord's standard output is a file, it is made append-only. Each program writes its
  lines through its own open of /dev/stdout, which appends; supervisord's own lines written at
  its own file offset would otherwise overwrite theirs (`supervisord ... > file`).
"""

from __future__ import annotations

import atexit
import fcntl
import os
import stat
import sys
from collections.abc import Callable, MutableMapping
from contextlib import suppress
from typing import Any

from supervisor import events
from supervisor.states import SupervisorStates

BAD_SETTING_STATUS = 2


def python_first_on_path(environ: MutableMapping[str, str], executable: str) -> None:
    """Put the folder of executable first on environ's PATH (once)."""
    folder = os.path.dirname(executable)
    path = environ.get("PATH", "")
    if folder and path.split(os.pathsep)[0] != folder:
        environ["PATH"] = folder + (os.pathsep + path if path else "")


def append_only_if_file(fd: int) -> None:
    """Make fd append-only when it is a regular file (a shell's `>`); leave pipes and ttys."""
    with suppress(OSError):
        if stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) | os.O_APPEND)


def bad_setting(wait_status: int | None) -> bool:
    """Return whether a wait status (os.waitpid's) is an exit with BAD_SETTING_STATUS."""
    return (
        wait_status is not None
        and os.WIFEXITED(wait_status)
        and os.WEXITSTATUS(wait_status) == BAD_SETTING_STATUS
    )


def _exit_with(status: int) -> None:
    """End supervisord with status once it has stopped every program and closed its logs."""
    for stream in (sys.stdout, sys.stderr):
        with suppress(OSError, ValueError):
            stream.flush()
    os._exit(status)


class StackGuard:
    """Watch what supervisord reaps; stop everything when a program exits with a bad setting."""

    def __init__(self, supervisord: Any) -> None:
        self.options = supervisord.options
        self.stopping = False
        self._waitpid: Callable[[], tuple[int | None, int | None]] = self.options.waitpid
        self.options.waitpid = self.waitpid
        events.subscribe(events.SupervisorRunningEvent, self.close_control_socket)

    def waitpid(self) -> tuple[int | None, int | None]:
        """Reap a child as supervisord does; on a bad setting, shut supervisord down."""
        pid, wait_status = self._waitpid()
        process = self.options.pidhistory.get(pid) if pid else None
        running = self.options.mood >= SupervisorStates.RUNNING  # not already stopping them all
        if process is not None and bad_setting(wait_status) and running and not self.stopping:
            self.stopping = True
            self.options.logger.critical(
                f"{process.config.name} exited with status {BAD_SETTING_STATUS}, a bad setting "
                "(its line above names it): stopping every program, not restarting"
            )
            self.options.mood = SupervisorStates.SHUTDOWN
            atexit.register(_exit_with, BAD_SETTING_STATUS)
        return pid, wait_status

    def close_control_socket(self, event: object) -> None:
        """Close the control socket that loading this plugin needed: nothing is served on it."""
        for config, server in self.options.httpservers:
            server.close()
            if "file" in config:
                with suppress(OSError):
                    os.unlink(config["file"])
        self.options.httpservers = ()


class NoMethods:
    """The RPC interface of this plugin: none (the control socket is closed at once)."""


def make_interface(supervisord: Any, **config: str) -> NoMethods:
    """Install the guard in a starting supervisord (supervisor.rpcinterface_factory)."""
    StackGuard(supervisord)
    python_first_on_path(os.environ, sys.executable)
    append_only_if_file(sys.stdout.fileno())
    return NoMethods()
