"""Generalized Ships: how far ablating a head rotates the subspace of the last-token hidden states.

The final normed hidden states of the last prompt token of the N harmful prompts form ``M`` ``[N, d]``;
the score is the sum of the principal angles, in degrees, between the top-``rank`` left singular
subspaces of ``M`` (unablated) and of ``M`` with the head ablated (:func:`hsr.heads.formulas.subspace_angle_degrees`).
Sahara (:mod:`hsr.heads.sahara`) searches groups of heads with this score.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping

import torch

from ...errors import ConfigError
from ...options import option
from ..formulas import subspace_angle_degrees
from ..readouts import LAST_HIDDEN
from .base import HeadScore, ScoreContext, Stat
from .registry import register_score

#: Per prompt and head: the ablated last-token final normed hidden state ``[d]`` (kept as it is).
HIDDEN = Stat("hidden", LAST_HIDDEN)


@dataclass
class GShipsOptions:
    rank: int = option(1, help="subspace rank r for gships and Sahara", minimum=1)


@register_score
class GShips(HeadScore):
    name = "gships"
    unit = "angle (degrees)"
    help = "principal angles of the last-token hidden-state subspace"
    options = GShipsOptions
    stats = (HIDDEN,)
    # Angles in degrees amplify the float32 rounding of the separate prefix pass to ~1e-5 on SmolLM2.
    prefix_reuse = False
    has_proxy = True

    def check(self, options: GShipsOptions, counts: Mapping[str, int]) -> None:
        n = counts["harmful"]
        if options.rank >= n:
            raise ConfigError(
                f"rank={options.rank} needs more prompts than that (got {n}): the top-r subspace of "
                f"{n} prompts is trivial when r >= {n}. Use more prompts or a smaller --rank."
            )

    def reduce(self, data: Mapping[str, torch.Tensor], ctx: ScoreContext) -> torch.Tensor:
        rows = ctx.rows("harmful")
        base = ctx.base[LAST_HIDDEN.name][rows]
        rank = ctx.options.rank
        return torch.tensor([subspace_angle_degrees(base, h[rows], rank) for h in data[HIDDEN.name]], dtype=torch.float64)

    def proxy(self, engine: Any, config: Any, timings: dict[str, float]) -> tuple[torch.Tensor, str]:
        from ..approx import gships_proxy

        t0 = time.perf_counter()
        proxy = gships_proxy(engine, config.rank, config.approx_directions).cpu()
        timings["gradient_s"] = time.perf_counter() - t0
        return proxy, "first-order-subspace"
