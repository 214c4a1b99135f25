"""``python -m hsr``: the same as the ``hsr`` command (needed for ``torchrun -m hsr`` and subprocess tests)."""

from .cli import entry

entry()
