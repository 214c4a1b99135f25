"""Keeping N:M structure intact while restoring (DESIGN.md 1.3, "Structure").

With an N:M mask (N pruned of every M consecutive inputs of a row), restoring a weight would
leave its group with N-1 zeros. The structure-preserving mode swaps instead: every weight restored
in a group re-prunes the least utility-important weight of that group that is currently kept (kept
weights are never restored ones, since only pruned weights are restored), so each group still
has exactly N zeros. A group has only M-N kept weights, so at most M-N restorations fit in it;
extra ones are dropped, keeping those with the highest safety score (stable: lower index wins ties).
"""

from __future__ import annotations

import math
from typing import Iterable

import torch

from ..pruning.masks import nm_of

CANDIDATE_M: tuple[int, ...] = (2, 4, 8, 16, 32, 64)


def _patterns(mask: torch.Tensor) -> dict[int, int | None]:
    """N per candidate M (None: not N:M for that M) of one mask, for every M with two groups per row."""
    return {m: nm_of(mask, m) for m in CANDIDATE_M if 2 * m <= mask.shape[1]}


def detect_nm(masks: Iterable[torch.Tensor]) -> tuple[int, int] | None:
    """The smallest-M pattern ``(n, m)`` shared by all non-empty ``masks``, or None.

    A pattern needs at least two groups per row (a per-row unstructured mask is trivially
    ``k:cols``, which is no structure worth preserving). ``masks`` is consumed one at a time (it may be a
    generator reading them lazily): only each mask's N per candidate M is kept.
    """
    found = [_patterns(mk) for mk in masks if bool(mk.any())]
    if not found:
        return None
    shared = set.intersection(*(set(p) for p in found))  # the M that fit the narrowest mask
    for m in sorted(shared):
        n = found[0][m]
        if n is not None and all(p[m] == n for p in found[1:]):
            return n, m
    return None


def _grouped(t: torch.Tensor, m: int) -> torch.Tensor:
    rows, cols = t.shape
    return t.reshape(rows, cols // m, m)


def limit_per_group(restore: torch.Tensor, safety: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep at most ``m - n`` restorations per group: those with the highest safety score."""
    r = _grouped(restore, m)
    big = torch.finfo(torch.float32).max
    s = torch.nan_to_num(_grouped(safety.float(), m), nan=-big, posinf=big, neginf=-big).masked_fill(~r, -math.inf)
    order = torch.sort(s, dim=-1, descending=True, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(m).expand_as(order).contiguous())
    return (r & (rank < (m - n))).reshape(restore.shape)


def reprune_for(restore: torch.Tensor, mask: torch.Tensor, utility: torch.Tensor, m: int) -> torch.Tensor:
    """For each restored weight of a group, the least utility-important kept weight to prune instead."""
    r, kept = _grouped(restore, m), ~_grouped(mask, m)
    k = r.sum(-1, keepdim=True)
    big = torch.finfo(torch.float32).max
    u = torch.nan_to_num(_grouped(utility.float(), m), nan=big, posinf=big, neginf=-big).masked_fill(~kept, math.inf)
    order = torch.sort(u, dim=-1, stable=True).indices
    rank = torch.empty_like(order)
    rank.scatter_(-1, order, torch.arange(m).expand_as(order).contiguous())
    out = kept & (rank < k)
    if bool((out.sum(-1, keepdim=True) != k).any()):
        raise ValueError("a group has more restorations than kept weights; call limit_per_group first")
    return out.reshape(restore.shape)
