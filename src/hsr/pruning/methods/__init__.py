"""Pruning methods: one module per method in this package, each registering itself.

A method is a function ``prune(weight, stats, name, config) -> (new_weight, mask)`` (mask True =
pruned) plus, when it calibrates on data, the accumulator that collects its statistics from the
inputs of each linear (``stats(name, rows)``, see :mod:`hsr.calibration`). The layer walk in
:func:`hsr.pruning.prune.prune_model` is the same for every method, so adding a method is one new
module here (discovered automatically) and a test.
"""

from __future__ import annotations

import importlib
import pkgutil
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

import torch

from ...errors import ConfigError
from ..masks import Sparsity, select_mask

if TYPE_CHECKING:
    from ..prune import PruneConfig

PruneFn = Callable[[torch.Tensor, Any, str, "PruneConfig"], "tuple[torch.Tensor, torch.Tensor]"]


@dataclass(frozen=True)
class PruningMethod:
    """A registered method: how to prune one linear, and which statistics it needs (None = no data)."""

    name: str
    prune: PruneFn
    statistics: Callable[[], Any] | None = None

    @property
    def needs_data(self) -> bool:
        return self.statistics is not None


_REGISTRY: dict[str, PruningMethod] = {}


def register(name: str, statistics: Callable[[], Any] | None = None) -> Callable[[PruneFn], PruneFn]:
    """Decorator: make ``prune`` available as ``--method NAME`` / ``prune.method: NAME``."""

    def wrap(prune: PruneFn) -> PruneFn:
        if name in _REGISTRY:
            raise ValueError(f"pruning method {name!r} is registered twice")
        _REGISTRY[name] = PruningMethod(name, prune, statistics)
        return prune

    return wrap


def get_method(name: str) -> PruningMethod:
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(f"Unknown pruning method {name!r}; choose one of {', '.join(_REGISTRY)}.") from None


def prune_by_scores(weight: torch.Tensor, scores: torch.Tensor, sparsity: Sparsity) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the lowest-scoring weights (the rule magnitude and Wanda share)."""
    mask = select_mask(scores, sparsity)
    return weight.masked_fill(mask, 0), mask


for _module in sorted(m.name for m in pkgutil.iter_modules(__path__)):
    importlib.import_module(f"{__name__}.{_module}")

#: Registered method names (the choices of ``--method``).
METHODS: tuple[str, ...] = tuple(_REGISTRY)

from .sparsegpt import SingularHessianError, inverse_hessian_factor, sparsegpt_prune  # noqa: E402
from .wanda import wanda_scores  # noqa: E402

__all__ = [
    "METHODS",
    "PruningMethod",
    "SingularHessianError",
    "get_method",
    "inverse_hessian_factor",
    "prune_by_scores",
    "register",
    "sparsegpt_prune",
    "wanda_scores",
]
