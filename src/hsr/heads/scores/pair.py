"""Pair attribution: where pruning broke the model, asked causally on a dense/pruned pair.

The pruned model is scored; the dense model is where the restored weights come from. For head
``(l, h)`` the pruned model gets the dense values of the slices HSR would restore for that head
(q rows of ``h``, k/v rows of its KV group, o_proj input columns of ``h``, their q/k/v biases:
:mod:`hsr.heads.restoring`), and the readout is the last-position next-token distribution. Per prompt

    gain(h) = KL(p_dense || p_pruned) - KL(p_dense || p_pruned, h restored)

is how much of the dense distribution that one head's restoration brings back (nats; negative when
it moves the pruned model further away). The score is the mean gain over harmful prompts minus the
mean gain over benign prompts.

Why this and not Ships on either model: Ships asks which heads matter to a model; HSR restores
weights, so what it needs to know is which head's pruning damage, once undone, gives safety back.
The gain measures exactly that intervention, on the weights realignment can touch. Why the benign
term: a head whose restoration repairs everything (a generally damaged head, the benign prompts'
distribution as much as the harmful ones') is a utility repair, not a safety one; the difference
cancels it, as ``contrastive_ships`` does for ablations, and keeps the unit (nats). A difference, not
a ratio, for the same reason: benign gains near zero would make a ratio unstable. The dense model's
readouts are computed once per prompt; the engines are :mod:`hsr.heads.pair_engines`.
"""

from __future__ import annotations

from typing import Mapping

import torch

from ..formulas import kl_divergence
from ..readouts import LAST_LOGPROBS
from .base import HeadScore, Needs, ScoreContext, Stat
from .registry import register_score
from .ships import per_prompt_kl

#: Per prompt and restored head: KL(p_dense || p_restored) of the last-position next-token distribution.
KL_TO_DENSE = Stat("kl_to_dense", LAST_LOGPROBS, per_prompt_kl, against="reference")


def kl_gains(dense: torch.Tensor, pruned: torch.Tensor, restored_kl: torch.Tensor) -> torch.Tensor:
    """``[heads, N]`` gains ``KL(dense || pruned) - KL(dense || restored)`` from the dense and pruned
    log-probabilities ``[N, V]`` and the restored KLs ``[heads, N]``."""
    return kl_divergence(dense, pruned)[None, :] - restored_kl.double()


def contrast(gains: torch.Tensor, harmful: slice, benign: slice) -> torch.Tensor:
    """Each head's mean gain on the harmful prompts minus its mean gain on the benign ones (``gains``: ``[heads, N]``)."""
    return gains[:, harmful].mean(1) - gains[:, benign].mean(1)


@register_score
class Pair(HeadScore):
    name = "pair"
    unit = "KL gain (nats)"
    help = ("KL to the dense model recovered by restoring the head's dense slices in the pruned model, harmful "
            "minus benign (needs the dense model and benign prompts)")
    needs = Needs(prompts=("harmful", "benign"), models=2)
    stats = (KL_TO_DENSE,)

    def reduce(self, data: Mapping[str, torch.Tensor], ctx: ScoreContext) -> torch.Tensor:
        name = LAST_LOGPROBS.name
        gains = kl_gains(ctx.reference[name], ctx.base[name], data[KL_TO_DENSE.name])
        return contrast(gains, ctx.rows("harmful"), ctx.rows("benign"))
