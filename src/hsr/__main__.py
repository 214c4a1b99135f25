"""``python -m hsr``: the same as the ``hsr`` command (needed for ``torchrun -m hsr`` and subprocess tests)."""

import sys

from .cli import main

sys.exit(main())
