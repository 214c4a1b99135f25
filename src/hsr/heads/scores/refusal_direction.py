"""Refusal-direction attribution: how much ablating a head removes the model's refusal direction.

After Arditi et al. (2024) and RDSHA (arXiv 2508.19697): the refusal direction is the difference of the
mean last-token states on harmful and on benign prompts, ``r = mean_harmful(x) - mean_benign(x)``,
normalised, from the unablated model. A head's score is the mean, over harmful prompts, of how far its
ablation moves the last-token state *against* that direction:
``score(h) = mean_harmful (x_base - x_ablated(h)) . r_hat``. Heads that write the refusal signal score
high; heads whose ablation disturbs the state in other directions (generic fragility, which plain
Ships rewards) score near zero. Negative scores: ablating the head pushes towards refusal.

``x`` is the final normed hidden state at the last prompt position (the readout every engine
computes); the papers pick an intermediate layer on validation prompts, which the engines' readouts
do not reach yet, so this score measures the direction where the model reads it out.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ...errors import ConfigError
from .base import HeadScore, Needs, ScoreContext
from .gships import HIDDEN
from ..readouts import LAST_HIDDEN
from .registry import register_score


def refusal_direction(hidden: torch.Tensor, harmful: slice, benign: slice) -> torch.Tensor:
    """Unit vector of ``mean(hidden[harmful]) - mean(hidden[benign])`` (``hidden``: ``[N, d]``)."""
    diff = hidden[harmful].mean(0) - hidden[benign].mean(0)
    norm = diff.norm()
    if not torch.isfinite(norm) or norm == 0:
        raise ConfigError("The harmful and benign prompts give the same mean last-token state: there is no "
                          "refusal direction to attribute. Use different prompt sets.")
    return diff / norm


@register_score
class RefusalDirection(HeadScore):
    name = "refusal_direction"
    unit = "projection removed (hidden units)"
    help = "how much ablating the head removes the harmful-minus-benign direction of the last-token state (needs benign prompts)"
    needs = Needs(prompts=("harmful", "benign"))
    stats = (HIDDEN,)


    def reduce(self, data: Mapping[str, torch.Tensor], ctx: ScoreContext) -> torch.Tensor:
        harmful, benign = ctx.rows("harmful"), ctx.rows("benign")
        base = ctx.base[LAST_HIDDEN.name]
        direction = refusal_direction(base, harmful, benign)
        before = base[harmful] @ direction  # [n_harmful]
        after = data[HIDDEN.name][:, harmful] @ direction  # [heads, n_harmful]
        return (before - after).mean(1)
