"""``python -m benchmarks.downstream``: see :mod:`benchmarks.downstream.run`."""

import sys

from benchmarks.downstream.run import main

sys.exit(main())
