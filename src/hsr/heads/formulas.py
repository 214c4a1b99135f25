"""The head scores as pure functions: Ships (KL) and generalized Ships (principal angles).

Everything here works in float64: the scores of different engines must agree to 1e-5 and
principal angles near zero are ill-conditioned when computed through arccos alone.
"""

from __future__ import annotations

import math

import torch


def kl_divergence(base_logp: torch.Tensor, other_logp: torch.Tensor) -> torch.Tensor:
    """KL(p_base || p_other) per row, from log-probabilities ``[..., V]``."""
    base = base_logp.double()
    return (base.exp() * (base - other_logp.double())).sum(-1).clamp_min(0.0)


def top_left_singular(matrix: torch.Tensor, rank: int) -> torch.Tensor:
    """Orthonormal basis ``[N, r]`` of the top-``rank`` left singular subspace of ``matrix`` ``[N, d]``."""
    u, _, _ = torch.linalg.svd(matrix.double(), full_matrices=False)
    return u[:, :rank]


def principal_angles(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Principal angles (radians, ascending) between the column spaces of orthonormal ``a`` and ``b``.

    Uses cosines for large angles and sines (Bjorck-Golub) for small ones, so angles near 0
    keep full precision.
    """
    a, b = a.double(), b.double()
    m = a.T @ b
    cos = torch.linalg.svdvals(m).clamp(0.0, 1.0)  # descending -> angles ascending
    resid = b - a @ m
    sin = torch.linalg.svdvals(resid).clamp(0.0, 1.0)  # descending -> matches angles descending
    k = min(a.shape[1], b.shape[1])
    sin_asc = torch.flip(sin[:k], dims=[0]) if sin.numel() >= k else torch.zeros(k, dtype=a.dtype)
    from_cos = torch.arccos(cos[:k])
    from_sin = torch.arcsin(sin_asc)
    return torch.where(cos[:k] ** 2 > 0.5, from_sin, from_cos)


def subspace_angle_degrees(base: torch.Tensor, other: torch.Tensor, rank: int) -> float:
    """Generalized Ships: sum of principal angles (degrees) between the top-``rank`` left singular
    subspaces of two ``[N, d]`` matrices of last-token final hidden states."""
    angles = principal_angles(top_left_singular(base, rank), top_left_singular(other, rank))
    return float(angles.sum()) * 180.0 / math.pi
