"""Magnitude pruning: drop the smallest |W| (no calibration data)."""

from __future__ import annotations

from typing import Any

import torch

from . import prune_by_scores, register


@register("magnitude")
def prune_magnitude(weight: torch.Tensor, stats: Any, name: str, config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return prune_by_scores(weight, weight.abs(), config.sparsity)
