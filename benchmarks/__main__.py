"""``python -m benchmarks``: the whole suite at one size (see benchmarks/suite.py)."""

import sys

from benchmarks.suite import main

sys.exit(main())
