"""Ships: how far ablating a head moves the next-token distribution at the last prompt position.

Per prompt, ``KL(p_base || p_ablated)`` of the next-token distribution (:func:`hsr.heads.formulas.kl_divergence`);
the head's score is its mean over the harmful prompts, in nats.
"""

from __future__ import annotations

import time
from typing import Any, Mapping

import torch

from ..formulas import kl_divergence
from ..readouts import LAST_LOGPROBS
from .base import HeadScore, ScoreContext, Stat
from .registry import register_score


def per_prompt_kl(base: torch.Tensor, ablated: torch.Tensor) -> torch.Tensor:
    """``KL(p_base || p_ablated)`` per ablated row: ``base`` ``[1, V]``, ``ablated`` ``[heads, V]`` log-probs."""
    return kl_divergence(base.expand_as(ablated), ablated)


#: Per prompt and head: KL(p_base || p_ablated) of the last-position next-token distribution.
KL = Stat("kl", LAST_LOGPROBS, per_prompt_kl)


def mean_kl(data: Mapping[str, torch.Tensor], ctx: ScoreContext, prompt_set: str = "harmful") -> torch.Tensor:
    """Each head's KL averaged over the prompts of ``prompt_set``."""
    return data[KL.name][:, ctx.rows(prompt_set)].mean(1)


@register_score
class Ships(HeadScore):
    name = "ships"
    unit = "KL (nats)"
    help = "KL of the next-token distribution"
    stats = (KL,)
    has_proxy = True

    def reduce(self, data: Mapping[str, torch.Tensor], ctx: ScoreContext) -> torch.Tensor:
        return mean_kl(data, ctx)

    def proxy(self, engine: Any, config: Any, timings: dict[str, float]) -> tuple[torch.Tensor, str]:
        """The gradient (Fisher) estimate (:mod:`hsr.heads.approx`), then with ``approx_refine`` its top
        candidates refined by the last-position ablation (:func:`hsr.heads.last_position.refine_last_position`)."""
        from ..approx import ships_proxy, ships_proxy_hidden
        from ..last_position import last_position_ok, refine_last_position

        refine = config.approx_refine > 0 and last_position_ok(engine)
        kv: dict | None = {} if refine else None  # the gradient pass's unablated keys/values, for the refinement
        t0 = time.perf_counter()
        if config.approx_fisher == "hidden":
            proxy = ships_proxy_hidden(engine, config.approx_fisher_rank, keep_kv=kv)
        else:
            proxy = ships_proxy(engine, config.approx_tokens, config.approx_probes, seed=config.seed)
        proxy = proxy.cpu()  # pickled tensors keep their device: a cuda:0 tensor would land on cuda:0 everywhere
        timings["gradient_s"] = time.perf_counter() - t0
        if refine:
            t0 = time.perf_counter()
            proxy = refine_last_position(engine, proxy, config.approx_refine, kv=kv or None)
            timings["refine_s"] = time.perf_counter() - t0
        return proxy, f"fisher-{config.approx_fisher}"
