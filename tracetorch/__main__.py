"""``python -m tracetorch``: the command line (see :mod:`tracetorch.cli`)."""

import sys

from tracetorch.cli import main

sys.exit(main())
