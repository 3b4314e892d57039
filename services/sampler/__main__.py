"""Run the sampler: python -m services.sampler."""

import sys

from services.builtin_hashes import use_builtin_hashes

use_builtin_hashes()  # before any import of hashlib: see services.builtin_hashes

from services.sampler.main import main  # noqa: E402

sys.exit(main())
