"""Contrastive Ships: Ships on harmful prompts minus Ships on benign prompts.

``score(h) = mean_harmful KL(p_base || p_ablated) - mean_benign KL(p_base || p_ablated)``, the KL of the
next-token distribution at the last prompt position, with the head ablated (the :mod:`.ships` statistic,
same direction). A head whose ablation breaks everything (a large KL on every prompt) scores high in
Ships but cancels out here; a head whose ablation moves the model on harmful prompts only stays high.

A difference, not a ratio: both terms are in nats, so the score keeps Ships' unit and scale and
ranks heads by the KL they add on harmful prompts beyond what they do anyway; a ratio is unstable
where the benign KL is near zero (most heads of a robust model, and every head under a tiny ablation)
and rewards heads that do almost nothing on benign prompts over heads that matter a lot on both.
The score can be negative (a head that moves benign prompts more).
"""

from __future__ import annotations

from typing import Mapping

import torch

from .base import HeadScore, Needs, ScoreContext
from .registry import register_score
from .ships import KL, mean_kl


@register_score
class ContrastiveShips(HeadScore):
    name = "contrastive_ships"
    unit = "KL harmful - KL benign (nats)"
    help = "Ships on harmful minus Ships on benign prompts (needs benign prompts)"
    needs = Needs(prompts=("harmful", "benign"))
    stats = (KL,)


    def reduce(self, data: Mapping[str, torch.Tensor], ctx: ScoreContext) -> torch.Tensor:
        return mean_kl(data, ctx, "harmful") - mean_kl(data, ctx, "benign")
