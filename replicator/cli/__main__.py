"""``python -m replicator.cli``: the same as the ``replicator`` console script."""

import sys

from replicator.cli.main import main

sys.exit(main())
