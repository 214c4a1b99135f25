"""Put one head's dense weights back into a pruned model for the duration of a block.

The slices are the ones HSR restores into (:mod:`hsr.realign.slices`, DESIGN.md 1.3): ``q_proj``
rows of query head ``h``, ``k_proj`` / ``v_proj`` rows of its key/value group (under GQA shared with
the group's other query heads), ``o_proj`` input columns of ``h``, and the q/k/v bias entries of
those rows where the projections have biases. The spans come from
:func:`hsr.realign.slices.head_span`, the function the realignment's masks are built from, so the
pair score (:mod:`hsr.heads.scores.pair`) intervenes on exactly what realignment can restore.

The whole slice takes its dense values (not only the pruned positions): for Wanda / magnitude pruning
the two are the same, and for SparseGPT, whose updates also move kept weights, the head then
gets its dense state back, which is the question the pair score asks.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterator

import torch

from ..architecture import ArchInfo, HeadGeometry
from ..realign.slices import ATTENTION, O, head_span


@dataclass(frozen=True)
class HeadSlice:
    """One projection's share of a head: ``weight[rows, cols]`` and, where it has one, ``bias[rows]``."""

    rel: str  # e.g. "self_attn.q_proj"
    rows: slice
    cols: slice
    bias_rows: slice | None  # None for o_proj (its bias is per hidden unit, no head's)


def head_slices(geom: HeadGeometry, head: int) -> list[HeadSlice]:
    """The weight (and bias) slices of query head ``head`` in each attention projection."""
    out = []
    for rel in ATTENTION:
        start, stop = head_span(geom, rel, head)
        if rel == O:
            out.append(HeadSlice(rel, slice(None), slice(start, stop), None))
        else:
            out.append(HeadSlice(rel, slice(start, stop), slice(None), slice(start, stop)))
    return out


@contextlib.contextmanager
def restored_head(dense: ArchInfo, pruned: ArchInfo, layer: int, head: int) -> Iterator[None]:
    """Inside the block, head ``head`` of ``layer`` of the pruned model carries the dense model's values
    of its slices; the pruned values are put back on exit, even when the block raises."""
    saved: list[tuple[torch.Tensor, tuple[slice, ...], torch.Tensor]] = []
    try:
        with torch.no_grad():
            for s in head_slices(pruned.geometry, head):
                d, p = dense.layers[layer].get_submodule(s.rel), pruned.layers[layer].get_submodule(s.rel)
                parts = [(p.weight, d.weight, (s.rows, s.cols))]
                if s.bias_rows is not None and p.bias is not None:
                    parts.append((p.bias, d.bias, (s.bias_rows,)))
                for target, source, index in parts:
                    saved.append((target, index, target[index].clone()))
                    target[index] = source[index].to(device=target.device, dtype=target.dtype)
        yield
    finally:
        with torch.no_grad():
            for target, index, value in reversed(saved):
                target[index] = value
