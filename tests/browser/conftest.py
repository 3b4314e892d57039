"""The browser fixtures of test_dashboard (Playwright over the system's Chromium), for every module.

They are defined once, in test_dashboard.py; re-exported here so that other browser test modules
get them by name without redefining them.
"""

from __future__ import annotations

from tests.browser.test_dashboard import browser, page, playwright, viewport, watch

__all__ = ["browser", "page", "playwright", "viewport", "watch"]
