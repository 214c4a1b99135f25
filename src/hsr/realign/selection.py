"""Pure neuron-level selection: which pruned weights of a matrix are safety-critical.

HSR's candidate set for one weight matrix is ``C = (S(q) ∩ U(max_p)) − U(p)``: weights that
matter for safety (top ``q`` by safety importance), that are still reasonably useful (inside the
top ``max_p`` by utility) but not among the most useful ``p`` (those a utility-driven pruner would
have kept anyway). Selection is over the flattened matrix by default, or per output row.

Top-k counts are ``k = round(frac * n)`` (half rounds up) with ``n`` the matrix size (or the row
width in per-row mode). Ties break deterministically: scores are sorted in descending order
with a stable sort, so among equal scores the lower (row-major) index is taken first. NaN scores
count as the lowest possible score.
"""

from __future__ import annotations

import math

import torch

from ..errors import ConfigError


def validate_fractions(p: float, q: float, max_p: float) -> None:
    """Raise :class:`ConfigError` unless ``0 <= p <= max_p <= 1`` and ``0 < q <= 1``."""
    for name, value in (("p", p), ("q", q), ("max_p", max_p)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ConfigError(f"{name} must be a number, got {value!r}.")
    if not 0.0 <= p <= max_p <= 1.0:
        raise ConfigError(f"Need 0 <= p <= max_p <= 1, got p={p}, max_p={max_p}.")
    if not 0.0 < q <= 1.0:
        raise ConfigError(f"Need 0 < q <= 1, got q={q}.")


def top_count(frac: float, n: int) -> int:
    """``round(frac * n)`` with halves rounded up, clamped to ``[0, n]``."""
    return max(0, min(n, int(math.floor(frac * n + 0.5 + 1e-9))))


def _clean(scores: torch.Tensor) -> torch.Tensor:
    s = scores.detach().float()
    return torch.nan_to_num(s, nan=-math.inf)


def top_fraction_mask(scores: torch.Tensor, frac: float, per_row: bool = False) -> torch.Tensor:
    """Boolean mask of the top ``frac`` entries of ``scores`` (flattened, or per row of a 2-D tensor)."""
    s = _clean(scores)
    if per_row:
        if s.dim() != 2:
            raise ValueError(f"per-row selection needs a 2-D tensor, got shape {tuple(s.shape)}")
        k = top_count(frac, s.shape[1])
        mask = torch.zeros_like(s, dtype=torch.bool)
        if k:
            order = torch.sort(s, dim=1, descending=True, stable=True).indices
            mask.scatter_(1, order[:, :k], True)
        return mask
    flat = s.reshape(-1)
    k = top_count(frac, flat.numel())
    mask = torch.zeros_like(flat, dtype=torch.bool)
    if k:
        order = torch.sort(flat, descending=True, stable=True).indices
        mask[order[:k]] = True
    return mask.reshape(s.shape)


def candidate_mask(
    utility: torch.Tensor,
    safety: torch.Tensor,
    p: float,
    q: float,
    max_p: float,
    per_row: bool = False,
) -> torch.Tensor:
    """``C = (S(q) ∩ U(max_p)) − U(p)`` for one weight matrix (True = candidate for restoration)."""
    validate_fractions(p, q, max_p)
    if utility.shape != safety.shape:
        raise ValueError(f"utility {tuple(utility.shape)} and safety {tuple(safety.shape)} scores differ in shape")
    s_q = top_fraction_mask(safety, q, per_row)
    u_max = top_fraction_mask(utility, max_p, per_row)
    u_p = top_fraction_mask(utility, p, per_row)
    return s_q & u_max & ~u_p
