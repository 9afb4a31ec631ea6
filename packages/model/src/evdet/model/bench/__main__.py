"""``python -m evdet.model.bench``: the ``evdet-bench`` console script."""

import sys

from evdet.model.bench.cli import main

sys.exit(main())
