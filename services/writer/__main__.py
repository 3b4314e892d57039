"""Run the writer: python -m services.writer."""

import sys

from services.writer.main import main

sys.exit(main())
