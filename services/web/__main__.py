"""Run the web process: `python -m services.web`."""

from __future__ import annotations

import sys

from services.web.main import main

sys.exit(main())
