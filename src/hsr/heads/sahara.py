"""Sahara: greedy search for a group of heads whose joint ablation most moves the safety subspace.

Each step adds the head that, ablated together with the group found so far, gives the largest
generalized Ships score (always the subspace score, as in the Sahara paper), measured against
the unablated model. The fast engine evaluates every candidate of layer ``l`` with the group's
heads ablated in the cached residual stream and in the batched rows.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:
    from .checkpoint import LayerCheckpoint
    from .engines import EngineBase, Head

#: The registered score Sahara maximizes (:mod:`hsr.heads.scores.gships`).
SAHARA_SCORE = "gships"


def sahara_search(
    engine: EngineBase,
    steps: int,
    options: Any,
    checkpoint: LayerCheckpoint | None,
    scorer: Callable[..., dict[Head, float]],
) -> dict[str, Any]:
    """Greedy group search for ``steps`` steps with :data:`SAHARA_SCORE` (``options``: its options, e.g. the
    rank); ``scorer`` is :func:`hsr.heads.attribution.exact_scores`. Returns the group and each step's score."""
    from .scores import get_score

    score = get_score(SAHARA_SCORE)
    arch = engine.arch
    group: list[Head] = []
    history = []
    for step in range(1, steps + 1):
        taken = set(group)
        plan = {l: [h for h in range(arch.num_heads) if (l, h) not in taken] for l in range(arch.num_layers)}
        scores = scorer(engine, plan, score, options, checkpoint=checkpoint, tag=f"sahara{step:03d}", fixed=list(group))
        best = min(scores, key=lambda c: (-scores[c], c))
        group.append(best)
        history.append({"step": step, "layer": best[0], "head": best[1], "score": scores[best]})
    return {"score": score.name, **asdict(options), "group": [[l, h] for l, h in group], "steps": history}
