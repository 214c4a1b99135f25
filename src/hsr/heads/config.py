"""What a head-scoring run computes, validated up front so bad options fail before any model work."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..data import DEFAULT_MAX_LENGTH
from ..errors import ConfigError
from ..options import option
from .ablation import MODES, default_eps

SCORES: tuple[str, ...] = ("ships", "gships")
ENGINES: tuple[str, ...] = ("fast", "naive", "approx")


@dataclass
class HeadScoreConfig:
    """Options of :func:`hsr.heads.score_heads`.

    ``eps=None`` means the mode's default (0 for ``zero``, 1e-5 for ``uniform``). ``rank`` is the
    generalized-Ships subspace rank (also used by Sahara). ``batch_heads`` is how many ablated heads
    share one batched forward in the fast engine; ``approx_top_k`` how many first-order candidates
    the approximate engine rescores exactly. ``approx_tokens``/``approx_probes``: rows of the
    Fisher estimate in the approximate Ships proxy; ``approx_directions``: right singular directions
    probed by the approximate generalized-Ships proxy (see :mod:`hsr.heads.approx`).
    """

    score: str = option("ships", help="ships: KL of the next-token distribution; gships: principal angles of the "
                        "last-token hidden-state subspace", choices=SCORES)
    mode: str = option("zero", help="zero: scale the head's output by eps; uniform: scale its query by eps "
                       "(uniform attention)", choices=MODES)
    eps: float | None = option(None, help="ablation factor; none = the mode's default (0 for zero, 1e-5 for uniform)")
    engine: str = option("fast", help="fast: exact, batched and cached; naive: exact reference loop; approx: "
                         "first-order pre-selection + exact rescoring of the top candidates", choices=ENGINES)
    rank: int = option(1, help="subspace rank r for gships and Sahara", minimum=1)
    sahara_steps: int = option(0, help="greedy Sahara group-search steps (0 = off)", minimum=0)
    batch_heads: int = option(16, help="ablated heads per batched forward (fast engine)", minimum=1)
    max_length: int = option(DEFAULT_MAX_LENGTH, help="cap on tokens per sample", minimum=1)
    approx_top_k: int = option(40, help="candidates the approx engine rescores exactly", minimum=1)
    approx_tokens: int = option(2, help="rows of the Fisher estimate in the approx Ships proxy", minimum=1)
    approx_probes: int = option(1, help="random probes of the Fisher estimate in the approx Ships proxy", minimum=0)
    approx_directions: int = option(4, help="right singular directions probed by the approx gships proxy", minimum=1)
    seed: int = option(0, help="random seed (data subsets, ties)")

    @property
    def effective_eps(self) -> float:
        return default_eps(self.mode) if self.eps is None else float(self.eps)

    def validate(self) -> None:
        if self.score not in SCORES:
            raise ConfigError(f"Unknown head score {self.score!r}; choose one of {', '.join(SCORES)}.")
        if self.mode not in MODES:
            raise ConfigError(f"Unknown ablation mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if self.engine not in ENGINES:
            raise ConfigError(f"Unknown engine {self.engine!r}; choose one of {', '.join(ENGINES)}.")
        if self.eps is not None and (not math.isfinite(float(self.eps)) or float(self.eps) < 0 or float(self.eps) > 1):
            raise ConfigError(f"eps must be in [0, 1] (the factor an ablated head is scaled by), got {self.eps}.")
        for name in ("rank", "batch_heads", "max_length", "approx_top_k", "approx_tokens", "approx_directions"):
            if int(getattr(self, name)) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}.")
        for name in ("sahara_steps", "approx_probes"):
            if int(getattr(self, name)) < 0:
                raise ConfigError(f"{name} must be 0 or more, got {getattr(self, name)}.")

    def check_against(self, n_prompts: int, num_layers: int, num_heads: int) -> None:
        """Checks that need the data and the model."""
        if n_prompts < 1:
            raise ConfigError("Head scoring needs at least one harmful prompt; the data is empty.")
        if (self.score == "gships" or self.sahara_steps) and self.rank >= n_prompts:
            raise ConfigError(
                f"rank={self.rank} needs more prompts than that (got {n_prompts}): the top-r subspace of "
                f"{n_prompts} prompts is trivial when r >= {n_prompts}. Use more prompts or a smaller --rank."
            )
        if self.sahara_steps > num_layers * num_heads:
            raise ConfigError(f"sahara_steps={self.sahara_steps} exceeds the {num_layers * num_heads} heads of the model.")

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["eps"] = self.effective_eps
        return d
