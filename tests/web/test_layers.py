"""The web package's layers: the pure modules and the row types load without any database read."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Modules that compute on rows and ticks; none may need the Store or a module of SQL to load.
PURE = (
    "services.web.rows",
    "common.idle",
    "services.web.energy",
    "services.web.usage",
    "services.web.buckets",
    "services.web.params",
    "services.web.fleet",
    "services.web.hosts",
    "services.web.shapes",
)


@pytest.mark.parametrize("module", PURE)
def test_a_pure_module_loads_no_reader(module: str) -> None:
    probe = (
        f"import sys, {module}\n"
        f"print(' '.join(name for name in sys.modules if name.startswith('services.web.')))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    loaded = done.stdout.split()
    # the Store (connections) and the *_reads modules (the SQL of each concern)
    readers = [name for name in loaded if name == "services.web.store" or name.endswith("_reads")]
    assert readers == [], f"{module} loads {readers}"
