"""What a test does when a part it needs is missing: skip with the reason, or fail in CI."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

import pytest


def in_ci(environ: Mapping[str, str] = os.environ) -> bool:
    """Return whether CI is set (CI=true, as CI services set it): no test may skip there."""
    return environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def unavailable(reason: str) -> NoReturn:
    """Skip the test naming the missing part; in CI, where everything must be there, fail."""
    if in_ci():
        pytest.fail(f"CI is set, and {reason}")
    pytest.skip(reason)
