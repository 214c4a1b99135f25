"""Which entries of the attention weights belong to a query head (DESIGN.md 1.3).

nn.Linear weights are ``[out, in]``. For query head ``h`` with head width ``d_h``:

* ``q_proj``: output rows ``[h*d_h, (h+1)*d_h)`` (and the same bias entries);
* ``k_proj`` / ``v_proj``: output rows of the head's key/value group ``g = h // G`` with
  ``G = H / K`` (GQA), i.e. rows ``[g*d_h, (g+1)*d_h)`` and their bias entries; under GQA these rows
  are shared by every query head of the group;
* ``o_proj``: input columns ``[h*d_h, (h+1)*d_h)`` (its bias is per hidden unit, not per head, so
  it belongs to no head).

``d_h`` is the config's ``head_dim`` (via :class:`~hsr.architecture.ArchInfo`), never ``hidden / H``.
"""

from __future__ import annotations

from typing import Iterable

import torch

from ..architecture import HeadGeometry

Q, K, V, O = "self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj"
ATTENTION = (Q, K, V, O)


def head_span(geom: HeadGeometry, rel: str, head: int) -> tuple[int, int]:
    """``(start, stop)`` of head ``head``'s rows (q/k/v) or columns (o) in projection ``rel``."""
    geom.check_head(head)
    index = geom.kv_head_of(head) if rel in (K, V) else head
    if rel not in ATTENTION:
        raise ValueError(f"{rel!r} is not an attention projection")
    return index * geom.head_dim, (index + 1) * geom.head_dim


def head_weight_mask(geom: HeadGeometry, rel: str, heads: Iterable[int], shape: tuple[int, int]) -> torch.Tensor:
    """Boolean ``[out, in]`` mask of the entries of ``rel`` that belong to any of ``heads``."""
    mask = torch.zeros(shape, dtype=torch.bool)
    for h in heads:
        start, stop = head_span(geom, rel, h)
        if rel == O:
            mask[:, start:stop] = True
        else:
            mask[start:stop, :] = True
    return mask


def head_bias_mask(geom: HeadGeometry, rel: str, heads: Iterable[int], length: int) -> torch.Tensor | None:
    """Boolean ``[out]`` mask of the bias entries of ``rel`` that follow ``heads``' rows; None for o_proj."""
    if rel == O:
        return None
    mask = torch.zeros(length, dtype=torch.bool)
    for h in heads:
        start, stop = head_span(geom, rel, h)
        mask[start:stop] = True
    return mask
