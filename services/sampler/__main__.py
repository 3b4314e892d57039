"""Run the sampler: python -m services.sampler."""

import sys

from services.sampler.main import main

sys.exit(main())
