"""Run the writer: python -m services.writer."""

import sys

from services.builtin_hashes import use_builtin_hashes

use_builtin_hashes()  # before any import of hashlib: see services.builtin_hashes

from services.writer.main import main  # noqa: E402

sys.exit(main())
