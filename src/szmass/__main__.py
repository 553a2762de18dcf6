"""``python -m szmass``: the ``szmass`` command."""

import sys

from .cli import main

sys.exit(main())
