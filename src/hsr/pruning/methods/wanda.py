"""Wanda (Sun et al. 2023): drop the lowest |W_ij| * ||X_j||_2, with X the linear's calibration inputs."""

from __future__ import annotations

from typing import Any

import torch

from ...calibration import InputNormAccumulator
from . import prune_by_scores, register


def wanda_scores(weight: torch.Tensor, input_norms: torch.Tensor) -> torch.Tensor:
    """S_ij = |W_ij| * ||X_j||_2."""
    return weight.abs().float() * input_norms.float().unsqueeze(0)


@register("wanda", statistics=InputNormAccumulator)
def prune_wanda(weight: torch.Tensor, stats: InputNormAccumulator, name: str, config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return prune_by_scores(weight, wanda_scores(weight, stats.norms(name)), config.sparsity)
