"""What a head-scoring run computes, validated up front so bad options fail before any model work."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch

from ..data import DEFAULT_MAX_LENGTH
from ..errors import ConfigError
from ..options import check_declared, option, seed_option
from .ablation import MODES, default_eps
from .sahara import SAHARA_SCORE
from .scores import SCORES, HeadScore, declared, get_score
from .scores.gships import GShipsOptions

ENGINES: tuple[str, ...] = ("fast", "naive", "approx")
#: The engines that run scores of a dense/pruned pair (:mod:`hsr.heads.pair_engines`).
PAIR_ENGINES: tuple[str, ...] = ("fast", "naive")
FISHER: tuple[str, ...] = ("hidden", "tokens")
#: Tokens per batched forward when ``max_batch_tokens`` is None, per device type. CPU: measured on
#: SmolLM2-135M, 8 prompts, 1 thread, variants interleaved: with prefix reuse, 1024 tokens 1.3x faster
#: than one prompt per forward, 2048-4096 1.2x. GPU: larger forwards keep the device busy; the value
#: is not yet measured on a GPU.
DEFAULT_BATCH_TOKENS: dict[str, int] = {"cpu": 1024, "cuda": 32768}


@dataclass
class HeadScoreConfig:
    """Options of :func:`hsr.heads.score_heads`.

    ``eps=None`` means the mode's default (0 for ``zero``, 1e-5 for ``uniform``). ``rank`` is the
    generalized-Ships subspace rank (also used by Sahara). ``batch_heads`` is how many ablated heads
    share one batched forward in the fast engine; ``approx_top_k`` how many first-order candidates
    the approximate engine rescores exactly. ``approx_tokens``/``approx_probes``: rows of the
    Fisher estimate in the approximate Ships proxy; ``approx_directions``: right singular directions
    probed by the approximate generalized-Ships proxy (see :mod:`hsr.heads.approx`).
    ``approx_fisher``: how the Ships proxy estimates the Fisher information: ``hidden`` (default:
    its top ``approx_fisher_rank`` eigen-directions in hidden-state space, deterministic) or
    ``tokens`` (``approx_tokens`` exact token rows plus ``approx_probes`` random tail probes).
    ``approx_refine``: the Ships estimate's top candidates that are re-estimated with the head ablated
    at the last position only (exact and nonlinear there, the earlier positions unablated; one token
    per head through the layers after it); the refined estimate is the geometric mean of both.

    Exact speed-ups of the fast engine (scores unchanged; each falls back by itself where it would
    not be exact): ``prefix_reuse`` runs the prompts' shared template prefix once per head batch
    (None: on for Ships, off for generalized Ships and Sahara, whose angles in degrees amplify the
    float32 rounding of the separate prefix pass to ~1e-5 on SmolLM2);
    ``max_batch_tokens`` sizes forwards that batch several prompts with the heads (rows x padded
    suffix tokens; 0 = one prompt per forward; None = the measured best for the device, see
    :data:`DEFAULT_BATCH_TOKENS`).

    Approximate engine: candidates are rescored exactly in the order of the estimate, in rounds;
    with ``approx_adaptive`` it stops once the exact top ``approx_top_h`` set is settled: the
    expected number of unrescored heads that would still enter it, under the estimate's error
    measured on the rescored heads (a log-normal fit of exact/estimate), is at most
    ``approx_tolerance``. It never rescores more than ``approx_top_k``.
    """

    score: str = option("ships", help="; ".join(f"{s}: {get_score(s).help}" for s in SCORES), choices=SCORES)
    mode: str = option("zero", help="zero: scale the head's output by eps; uniform: scale its query by eps "
                       "(uniform attention)", choices=MODES)
    eps: float | None = option(None, help="ablation factor; none = the mode's default (0 for zero, 1e-5 for uniform)")
    engine: str = option("fast", help="fast: exact, batched and cached; naive: exact reference loop; approx: "
                         "first-order pre-selection + exact rescoring of the top candidates", choices=ENGINES)
    rank: int = declared(GShipsOptions, "rank")
    sahara_steps: int = option(0, help="greedy Sahara group-search steps (0 = off)", minimum=0)
    batch_heads: int = option(16, help="ablated heads per batched forward (fast engine)", minimum=1)
    max_length: int = option(DEFAULT_MAX_LENGTH, help="cap on tokens per sample", minimum=1)
    approx_top_k: int = option(40, help="candidates the approx engine rescores exactly", minimum=1)
    approx_tokens: int = option(2, help="rows of the Fisher estimate in the approx Ships proxy", minimum=1)
    approx_probes: int = option(1, help="random probes of the Fisher estimate in the approx Ships proxy", minimum=0)
    approx_directions: int = option(4, help="right singular directions probed by the approx gships proxy", minimum=1)
    approx_fisher: str = option("hidden", help="approx Ships proxy's Fisher estimate: hidden (top eigen-directions in "
                                "hidden-state space) or tokens (exact token rows + random probes)", choices=FISHER)
    approx_fisher_rank: int = option(2, help="eigen-directions of the hidden Fisher estimate (approx engine)", minimum=1)
    approx_refine: int = option(0, help="approx Ships: re-estimate this many top candidates of the gradient "
                                "estimate with the head ablated at the last position only (exact there), combined "
                                "with the gradient estimate by geometric mean (helped on one prompt set, hurt on "
                                "another: docs/experiments/approx-estimates.md); 0 = gradient estimate only", minimum=0)
    approx_top_h: int | None = option(None, help="approx: rescore until the exact top-h set is settled; none = 10 "
                                      "(hsr heads) or realign.top_h (hsr run)", minimum=1)
    approx_adaptive: bool = option(True, help="approx: stop rescoring once the top-h set is settled (else rescore "
                                   "approx_top_k candidates)")
    approx_tolerance: float = option(0.5, help="approx: stop once the expected number of top-h heads still missed "
                                     "(error model fitted on the rescored heads) is at most this", minimum=0)
    prefix_reuse: bool | None = option(None, help="fast engine: run the prompts' shared template prefix once per head "
                                       "batch; none = on for ships, off for gships / Sahara")
    max_batch_tokens: int | None = option(None, help="fast engine: tokens per forward batching prompts with heads; "
                                          "0 = one prompt per forward; none = the measured best for the device",
                                          minimum=0)
    seed: int = seed_option(help="random seed (data subsets, ties)")

    @property
    def effective_approx_top_h(self) -> int:
        """``approx_top_h``, or 10 (the paper's h) when unset."""
        return 10 if self.approx_top_h is None else int(self.approx_top_h)

    @property
    def effective_prefix_reuse(self) -> bool:
        if self.prefix_reuse is not None:
            return bool(self.prefix_reuse)
        return get_score(self.score).prefix_reuse and not self.sahara_steps

    def batch_tokens_for(self, device: torch.device) -> int:
        """``max_batch_tokens``, or the measured best for ``device``'s type when None."""
        if self.max_batch_tokens is not None:
            return int(self.max_batch_tokens)
        return DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cpu"])

    @property
    def effective_eps(self) -> float:
        return default_eps(self.mode) if self.eps is None else float(self.eps)

    @property
    def head_score(self) -> HeadScore:
        """The registered score named by ``score``."""
        return get_score(self.score)

    def scores_used(self) -> list[HeadScore]:
        """Every score this run computes: ``score``, and Sahara's where ``sahara_steps`` is set."""
        used = [self.head_score]
        if self.sahara_steps and SAHARA_SCORE != self.score:
            used.append(get_score(SAHARA_SCORE))
        return used

    def validate(self) -> None:
        check_declared(self)
        score = self.head_score
        if score.needs.models not in (1, 2):
            raise ConfigError(f"Head score {score.name!r} needs {score.needs.models} models; score_heads runs one "
                              "or a dense/pruned pair.")
        if score.needs.models == 2:
            self.check_pair_options(score.name)
        if self.engine == "approx" and not score.has_proxy:
            raise ConfigError(f"Head score {score.name!r} has no first-order estimate for the approx engine; use "
                              "engine fast or naive.")
        if self.eps is not None and (not math.isfinite(float(self.eps)) or float(self.eps) < 0 or float(self.eps) > 1):
            raise ConfigError(f"eps must be in [0, 1] (the factor an ablated head is scaled by), got {self.eps}.")
        if not math.isfinite(float(self.approx_tolerance)):
            raise ConfigError(f"approx_tolerance must be 0 or more (expected top-h heads missed), got {self.approx_tolerance}.")

    def check_pair_options(self, name: str) -> None:
        """A dense/pruned pair score restores weights instead of ablating: refuse what would not apply."""
        if self.engine not in PAIR_ENGINES:
            raise ConfigError(f"Head score {name!r} (a dense/pruned pair) runs on engine {' or '.join(PAIR_ENGINES)}, "
                              f"not {self.engine}.")
        if self.sahara_steps:
            raise ConfigError(f"Head score {name!r} restores one head at a time; Sahara's group search "
                              "(sahara_steps) ablates groups and does not apply. Set sahara_steps to 0.")
        if self.mode != "zero" or self.eps is not None:
            raise ConfigError(f"Head score {name!r} restores the head's dense weights instead of ablating it; "
                              "mode and eps do not apply (leave them at their defaults).")

    def check_against(self, n_prompts: int, num_layers: int, num_heads: int, n_benign: int | None = None) -> None:
        """Checks that need the data and the model (``n_benign``: benign prompts, where known)."""
        if n_prompts < 1:
            raise ConfigError("Head scoring needs at least one harmful prompt; the data is empty.")
        counts = {"harmful": n_prompts, **({} if n_benign is None else {"benign": n_benign})}
        for score in self.scores_used():
            for name in score.needs.prompts:  # every prompt set a score declares must hold a prompt
                if counts.get(name, 1) < 1:
                    raise ConfigError(f"{score.name} needs at least one {name} prompt; the {name} data is empty.")
            score.check(score.options_from(self), counts)
        if self.sahara_steps > num_layers * num_heads:
            raise ConfigError(f"sahara_steps={self.sahara_steps} exceeds the {num_layers * num_heads} heads of the model.")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eps"] = self.effective_eps
        return d
