"""One log line per kind of event per interval, however often it happens, with the count held back.

- Why: a hostile or broken peer can cause an error on every message it sends; logging each would
  fill the disk (and flush the log rotation) in minutes.
- Each kind (a short key the caller chooses) is logged at most once per `every_s`; `log` appends
  how many were held back, `due` hands the count to a caller that words the line itself.
- The table of kinds is bounded: past `max_kinds`, the kind logged longest ago is forgotten.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

DEFAULT_EVERY_S = 60.0
DEFAULT_MAX_KINDS = 256


@dataclass
class _Kind:
    logged_s: float
    held: int = 0  # events (or the counts given to `due`) since the last line


class ThrottledLog:
    """Log through `logger` at most one line per kind per `every_s` seconds (monotonic clock)."""

    def __init__(
        self,
        logger: logging.Logger,
        every_s: float = DEFAULT_EVERY_S,
        *,
        max_kinds: int = DEFAULT_MAX_KINDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._every_s = every_s
        self._max_kinds = max_kinds
        self._clock = clock
        self._kinds: OrderedDict[str, _Kind] = OrderedDict()
        self._lock = threading.Lock()  # the writer's threads and the web's executor log too

    def due(self, kind: str, count: int = 1) -> int | None:
        """Count `count` events of kind; return the total since the last line if one is due now.

        None: a line of this kind went out under every_s ago; the count is held for the next.
        """
        now = self._clock()
        with self._lock:
            seen = self._kinds.get(kind)
            if seen is not None and now - seen.logged_s < self._every_s:
                seen.held += count
                return None
            held = 0 if seen is None else seen.held
            self._kinds[kind] = _Kind(now)
            self._kinds.move_to_end(kind)
            while len(self._kinds) > self._max_kinds:
                self._kinds.popitem(last=False)
        return held + count

    def log(self, kind: str, level: int, msg: str, *args: Any, exc_info: Any = None) -> bool:
        """Log msg % args unless a line of this kind went out under every_s ago; return if it did.

        The line ends with how many of its kind were held back since the last one, if any.
        """
        total = self.due(kind)
        if total is None:
            return False
        held = total - 1
        suffix = f" ({held} more of this kind not logged since the last line)" if held else ""
        self._logger.log(level, msg + "%s", *args, suffix, exc_info=exc_info)
        return True
