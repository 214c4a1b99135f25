"""Finding NaN and infinite values in weights and scores, before they spread silently.

One NaN weight makes every head score NaN and every restored weight meaningless without an error;
the checks here name the first tensor that holds one so the caller can refuse in one line.
"""

from __future__ import annotations

import itertools
from typing import Iterable

import torch
from torch import nn

from .placement import offloaded_weights

#: Elements checked per step: bounds the temporary boolean tensor for a huge embedding matrix.
_CHUNK = 1 << 24


def count_nonfinite(t: torch.Tensor) -> int:
    """The number of NaN/inf entries of floating-point ``t`` (0 for other dtypes and meta tensors)."""
    if t.device.type == "meta" or not (t.is_floating_point() or t.is_complex()):
        return 0
    flat = t.detach().reshape(-1)
    return sum(int((~torch.isfinite(part)).sum()) for part in flat.split(_CHUNK))


def first_nonfinite(named: Iterable[tuple[str, torch.Tensor]]) -> tuple[str, int] | None:
    """``(name, count)`` of the first tensor holding NaN or inf, or None."""
    for name, t in named:
        if t.device.type == "meta" or not t.is_floating_point():
            continue
        if not bool(torch.isfinite(t.detach()).all()) if t.numel() <= _CHUNK else count_nonfinite(t):
            return name, count_nonfinite(t)
    return None


def nonfinite_weight(model: nn.Module) -> tuple[str, int] | None:
    """The first parameter or buffer of ``model`` holding NaN or inf. Offloaded ones (meta tensors in
    the model) are read from accelerate's store one tensor at a time: a NaN in a layer kept on disk
    spreads as surely as one in memory."""
    resident = itertools.chain(model.named_parameters(), model.named_buffers())
    return first_nonfinite(itertools.chain(resident, offloaded_weights(model)))
