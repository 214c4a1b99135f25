"""Exact accounting of what a realignment restored (DESIGN.md 1.3: report counts and fractions).

Counts are of weights (and, for checkpoints whose biases were zeroed, bias entries) that got their
dense value back. Per head: restored entries of the head's q_proj rows (and q bias) and o_proj
columns. k_proj / v_proj rows belong to a key/value group shared by ``G = H / K`` query heads
under GQA, so their restorations are counted once per (layer, KV group), listing the selected
query heads of that group, not split among heads.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch

from ..architecture import ArchInfo
from .slices import K, O, Q, V, HeadGeometry, head_span


def _count(t: torch.Tensor | None) -> int:
    return int(t.sum()) if t is not None else 0


def _rel_of(arch: ArchInfo, name: str) -> tuple[int, str]:
    prefix = f"{arch.layers_path}."
    rest = name[len(prefix):]
    layer, rel = rest.split(".", 1)
    return int(layer), rel


def account(
    arch: ArchInfo,
    heads: list[tuple[int, int]],
    restored: dict[str, torch.Tensor],
    restored_bias: dict[str, torch.Tensor],
    repruned: dict[str, torch.Tensor],
    language_model_params: int,
) -> dict[str, Any]:
    """restored_params / fraction, and the per-matrix, per-layer, per-head and per-KV-group breakdown."""
    geom = HeadGeometry.from_arch(arch)
    per_matrix: dict[str, dict[str, int]] = {}
    layer_totals: dict[int, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for name in sorted(set(restored) | set(restored_bias) | set(repruned), key=lambda n: _rel_of(arch, n)):
        w, b, x = _count(restored.get(name)), _count(restored_bias.get(name)), _count(repruned.get(name))
        layer, rel = _rel_of(arch, name)
        per_matrix[name] = {"weights": w, "bias": b, "repruned": x}
        totals = layer_totals[layer]
        totals["restored"] += w + b
        totals[rel] += w + b
        totals["repruned"] += x
    weights = sum(v["weights"] for v in per_matrix.values())
    biases = sum(v["bias"] for v in per_matrix.values())
    repr_total = sum(v["repruned"] for v in per_matrix.values())
    total = weights + biases

    per_layer = [{"layer": layer, **dict(layer_totals[layer])} for layer in sorted(layer_totals)]

    per_head = []
    for layer, head in heads:
        q = restored.get(arch.full_name(layer, Q))
        o = restored.get(arch.full_name(layer, O))
        qb = restored_bias.get(arch.full_name(layer, Q))
        qs, qe = head_span(geom, Q, head)
        os_, oe = head_span(geom, O, head)
        entry = {
            "layer": layer,
            "head": head,
            "kv_head": geom.kv_head_of(head),
            "q_proj": _count(q[qs:qe] if q is not None else None) + _count(qb[qs:qe] if qb is not None else None),
            "o_proj": _count(o[:, os_:oe] if o is not None else None),
        }
        entry["restored"] = entry["q_proj"] + entry["o_proj"]
        per_head.append(entry)

    groups: dict[tuple[int, int], list[int]] = defaultdict(list)
    for layer, head in heads:
        groups[(layer, geom.kv_head_of(head))].append(head)
    per_kv_group = []
    for (layer, g), members in sorted(groups.items()):
        entry: dict[str, Any] = {"layer": layer, "kv_head": g, "heads": sorted(members)}
        s, e = g * geom.head_dim, (g + 1) * geom.head_dim
        for rel in (K, V):
            w = restored.get(arch.full_name(layer, rel))
            b = restored_bias.get(arch.full_name(layer, rel))
            entry[rel.split(".")[-1]] = _count(w[s:e] if w is not None else None) + _count(b[s:e] if b is not None else None)
        entry["restored"] = entry["k_proj"] + entry["v_proj"]
        per_kv_group.append(entry)

    return {
        "restored_params": total,
        "restored_weights": weights,
        "restored_bias_params": biases,
        "repruned_params": repr_total,
        "language_model_params": language_model_params,
        "restored_fraction": total / language_model_params if language_model_params else 0.0,
        "restored_per_ten_thousand": 1e4 * total / language_model_params if language_model_params else 0.0,
        "per_layer": per_layer,
        "per_head": per_head,
        "per_kv_group": per_kv_group,
        "per_matrix": per_matrix,
    }
