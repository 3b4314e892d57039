"""`python -m services.keygen NAME [--dir DIR]` still works: see services.transport.keygen."""

from __future__ import annotations

import sys

from services.transport.keygen import main

if __name__ == "__main__":
    sys.exit(main())
