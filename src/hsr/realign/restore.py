"""Neuron-level restoration inside the selected safety heads (DESIGN.md 1.3).

For each attention projection of a layer holding a selected head, the restored set is
``R = C ∩ M ∩ slices``: candidates from :func:`~hsr.realign.selection.candidate_mask`, inside the
pruning mask ``M``, inside the selected heads' slices. Restored weights get their original dense
value back; nothing outside ``M`` is touched (except re-pruned weights in the N:M-preserving mode).

Options: whole-head restore ignores ``C`` (every pruned weight of the slices: the paper's "HSR-a"
ablation); ``include_mlp`` also realigns the whole MLP matrices of layers holding a selected head;
random heads is the seeded control; ``preserve_nm`` keeps N:M masks valid by swapping; ``budget``
keeps only the ``budget`` restorations with the highest safety score across all matrices (ties:
earlier layer/matrix, then lower index). Biases are never pruned by hsr; for external checkpoints
whose q/k/v bias entries were zeroed, those entries follow their rows: they are restored when the
row has a restored weight (every slice row in whole-head mode). They count in ``restored_params``
but not against ``budget``.

``selection="taylor"`` (not the paper's rule) ranks M ∩ slices instead by a first-order estimate of how
much restoring each weight lowers the refusal loss (:mod:`hsr.realign.taylor`) and restores the top
``k``, ``k`` being what the set difference restores for the same configuration (or ``budget``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from .. import __version__
from ..architecture import HeadGeometry
from ..errors import ConfigError, HsrError
from ..io import (
    LazyMapping,
    PackedMasks,
    atomic_output_dir,
    count_masked,
    mask_shape,
    pack_mask,
    packed_mask,
    save_masks,
    write_json,
)
from ..data import DEFAULT_MAX_LENGTH, Sample
from ..finite import count_nonfinite
from ..loading import LoadedModel
from ..options import check_declared, option, seed_option
from ..placement import onloaded_each, save_model
from ..pruning.masks import Sparsity, nm_of
from ..pruning.prune import MASK_FILE, SUMMARY_FILE
from .external import check_compatible, check_related, infer_masks
from .nm import detect_nm, limit_per_group, reprune_for
from .ranking import select_heads
from .selection import candidate_mask, validate_fractions
from .slices import ATTENTION, head_bias_mask, head_weight_mask
from .summary import account
from .taylor import taylor_scores

log = logging.getLogger(__name__)

RESTORED_FILE = "restored.safetensors"
SET_DIFFERENCE, TAYLOR = "set_difference", "taylor"
SELECTIONS: tuple[str, ...] = (SET_DIFFERENCE, TAYLOR)


class RealignError(HsrError, ValueError):
    """Realignment inputs do not fit together (scores, masks, model)."""


@dataclass
class RealignConfig:
    """Neuron-level HSR; every field is also a ``hsr realign`` flag and a ``realign.`` key of ``hsr run``."""

    top_h: int = option(10, help="number of safety heads to realign", minimum=1)
    p: float = option(0.5, help="U(p): the most useful fraction, never restored")
    q: float = option(0.5, help="S(q): the most safety-critical fraction")
    max_p: float = option(0.7, help="U(max_p): restore only within this useful fraction")
    per_row: bool = option(False, help="select top fractions per output row instead of per matrix")
    include_mlp: bool = option(False, help="also realign the MLPs of layers holding a selected head")
    whole_head: bool = option(False, help="restore every pruned weight of the heads (HSR-a ablation)")
    random_heads: bool = option(False, help="control: top-h heads drawn at random (seeded)")
    seed: int = seed_option(help="random seed (random heads, ties)")
    preserve_nm: bool = option(False, help="keep an N:M mask valid by swapping restored weights")
    budget: int | None = option(None, help="restore at most this many parameters (highest safety scores first)",
                                minimum=0)
    nm: str | None = option(None, help="N:M pattern for preserve_nm such as 2:4; none = detected from the mask")
    selection: str = option(SET_DIFFERENCE, help="which pruned weights of the heads to restore: set_difference "
                            "(the paper's C) or taylor (top-k by first-order refusal-loss drop, k = the set "
                            "difference's count or budget)", choices=SELECTIONS)

    def validate(self) -> None:
        check_declared(self)
        validate_fractions(self.p, self.q, self.max_p)
        if self.nm is not None:
            if not self.preserve_nm:
                raise ConfigError(f"nm={self.nm!r} (--nm) only applies with preserve_nm (--preserve-nm); add it or drop --nm.")
            sp = Sparsity.parse(self.nm)
            if not sp.is_nm:
                raise ConfigError(f"nm must be an N:M pattern such as 2:4, got {self.nm!r}.")
        if self.selection == TAYLOR and self.whole_head:
            raise ConfigError("selection=taylor (--selection taylor) picks among the heads' pruned weights, but "
                              "whole_head (--whole-head) restores all of them; drop one.")


@dataclass
class RealignResult:
    """What :func:`realign_pruned` did. The mask mappings hold nothing unpacked: ``masks_after`` is computed
    per matrix when read (from the input masks, which may themselves be read from their file: leave
    them unchanged until the result is saved), the others are bit-packed
    (:class:`~hsr.io.PackedMasks`); each read gives a fresh ``bool`` tensor."""

    masks_after: Mapping[str, torch.Tensor]
    restored: Mapping[str, torch.Tensor]
    summary: dict[str, Any]
    repruned: Mapping[str, torch.Tensor] = field(default_factory=dict)
    restored_bias: dict[str, torch.Tensor] = field(default_factory=dict)


def _scores(table: Mapping[str, torch.Tensor] | None, kind: str, name: str, shape: torch.Size) -> torch.Tensor:
    if table is None:
        raise RealignError(f"{kind} importance scores are required for this configuration but none were given.")
    if name not in table:
        raise RealignError(f"{kind} importance scores lack {name}; were they computed on this model (with MLPs)?")
    t = table[name]
    if tuple(t.shape) != tuple(shape):
        raise RealignError(f"{kind} importance for {name} has shape {tuple(t.shape)}, the weight {tuple(shape)}.")
    t = t.detach().float().cpu()
    bad = count_nonfinite(t)
    if bad:
        raise RealignError(f"{kind} importance for {name} holds {bad:,} NaN or infinite value(s); recompute it "
                           "(the scores rank weights, so they must be finite).")
    return t


def _apply_budget(restore: PackedMasks, restored_safety: dict[str, torch.Tensor], budget: int) -> PackedMasks:
    """Keep the ``budget`` restorations with the highest safety score across all matrices (ties: earlier
    matrix, then lower index). ``restored_safety`` holds each matrix's scores at its restored positions
    (flat order, NaN as -inf), so no matrix-sized table is needed: the budget-th highest score is the
    threshold, and the ties at it go to the first ones in that order."""
    total = sum(v.numel() for v in restored_safety.values())
    if total <= budget:
        return restore
    vals = torch.cat(list(restored_safety.values()))
    threshold = torch.kthvalue(vals, total - budget + 1).values if budget else torch.tensor(math.inf)
    ties = budget - int((vals > threshold).sum())
    del vals
    out = PackedMasks()
    for name, v in restored_safety.items():
        keep = v > threshold
        at = (v == threshold).nonzero().squeeze(1)[: max(ties, 0)]
        keep[at] = True
        ties -= at.numel()
        r = restore[name]
        flat = torch.zeros(r.numel(), dtype=torch.bool)
        flat[r.reshape(-1).nonzero().squeeze(1)[keep]] = True
        out[name] = flat.reshape(r.shape)
    return out


def _nm_pattern(config: RealignConfig, masks: Iterable[torch.Tensor]) -> tuple[int, int]:
    """The N:M pattern to preserve: ``config.nm`` checked against every mask, or detected (one mask at a time)."""
    if config.nm is not None:
        sp = Sparsity.parse(config.nm)
        if any(mk.any() and nm_of(mk, sp.m) != sp.n for mk in masks):
            raise RealignError(f"preserve_nm with nm={config.nm}: the pruning mask is not {config.nm} in every matrix.")
        return sp.n, sp.m
    found = detect_nm(masks)
    if found is None:
        raise RealignError(
            "preserve_nm needs an N:M pruning mask (N pruned of every M consecutive inputs), but the mask is not N:M "
            "for any M in 2..64; drop --preserve-nm for unstructured masks."
        )
    return found


@dataclass
class Target:
    """One weight matrix HSR may restore into: its full name, relative name (``self_attn.q_proj``), the
    selected heads of its layer (None: the whole matrix, for ``include_mlp``) and its shape."""

    name: str
    rel: str
    heads: list[int] | None
    shape: tuple[int, ...]


@dataclass
class RestorePlan:
    """What to restore (True = copy the dense value back) and, in N:M mode, what to re-prune instead
    (True = zero), decided without touching any model and held bit-packed."""

    restore: PackedMasks
    targets: dict[str, Target]
    repruned: PackedMasks
    nm: tuple[int, int] | None
    candidates: int


def restore_targets(arch: Any, heads: Sequence[tuple[int, int]], include_mlp: bool) -> list[Target]:
    """The matrices of every layer holding a selected head (attention always, MLP only with ``include_mlp``)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)
    out = []
    for layer in sorted(by_layer):
        rels = list(ATTENTION) + ([r for r in arch.linear_names(True) if r not in ATTENTION] if include_mlp else [])
        for rel in rels:
            name = arch.full_name(layer, rel)
            shape = tuple(arch.layer_linears(layer)[rel].weight.shape)
            out.append(Target(name, rel, by_layer[layer] if rel in ATTENTION else None, shape))
    return out


def _mask_of(masks: Mapping[str, torch.Tensor], t: Target) -> torch.Tensor:
    """The target's pruning mask (True = pruned); none pruned when ``masks`` lacks it."""
    return masks[t.name].bool().cpu() if t.name in masks else torch.zeros(t.shape, dtype=torch.bool)


def _needs_scores(config: RealignConfig) -> bool:
    return not config.whole_head or config.preserve_nm or config.budget is not None


def _slice_region(geom: HeadGeometry, t: Target, masks: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """One target's M ∩ slices: its pruned weights inside the selected heads' slices (whole MLP matrices)."""
    mask = _mask_of(masks, t)
    return mask if t.heads is None else mask & head_weight_mask(geom, t.rel, t.heads, t.shape)


def _region(
    geom: HeadGeometry, t: Target, masks: Mapping[str, torch.Tensor], utility: Mapping[str, torch.Tensor] | None,
    safety: Mapping[str, torch.Tensor] | None, config: RealignConfig,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One target's C ∩ M ∩ slices, and its safety scores (None when the configuration needs none)."""
    region = _slice_region(geom, t, masks)
    if not _needs_scores(config):
        return region, None
    safety_t = _scores(safety, "safety", t.name, t.shape)
    utility_t = _scores(utility, "utility", t.name, t.shape)
    if not config.whole_head:
        region = region & candidate_mask(utility_t, safety_t, config.p, config.q, config.max_p, config.per_row)
    return region, safety_t


def _repruned(
    targets: Sequence[Target], restore: PackedMasks, masks: Mapping[str, torch.Tensor],
    utility: Mapping[str, torch.Tensor] | None, m: int,
) -> PackedMasks:
    """Per target, the least utility-important kept weight of each N:M group for every restored one in it."""
    out = PackedMasks()
    for t in targets:
        out[t.name] = reprune_for(restore[t.name], _mask_of(masks, t), _scores(utility, "utility", t.name, t.shape), m)
    return out


def plan_restore(
    geom: HeadGeometry,
    targets: Sequence[Target],
    masks: Mapping[str, torch.Tensor],
    utility: Mapping[str, torch.Tensor] | None,
    safety: Mapping[str, torch.Tensor] | None,
    config: RealignConfig,
) -> RestorePlan:
    """R = C ∩ M ∩ slices per target matrix (pure: masks and scores in, boolean masks out), then the
    N:M limit, the budget and the N:M re-pruning. ``masks`` is True where pruned; a target without a
    mask has none pruned. Goes target by target: one matrix's mask and scores are in memory at a time
    (``masks`` and the score tables may read them on access), and the plan keeps its masks bit-packed."""
    nm = _nm_pattern(config, (_mask_of(masks, t) for t in targets if t.name in masks)) if config.preserve_nm else None
    restore = PackedMasks()
    restored_safety: dict[str, torch.Tensor] = {}
    candidates = 0
    for t in targets:
        region, safety_t = _region(geom, t, masks, utility, safety, config)
        candidates += int(region.sum())
        if nm is not None and region.any():
            region = limit_per_group(region, safety_t, *nm)
        if config.budget is not None:
            restored_safety[t.name] = torch.nan_to_num(safety_t[region], nan=-math.inf)
        restore[t.name] = region
    if config.budget is not None:
        restore = _apply_budget(restore, restored_safety, config.budget)
    repruned = _repruned(targets, restore, masks, utility, nm[1]) if nm is not None else PackedMasks()
    return RestorePlan(restore, {t.name: t for t in targets}, repruned, nm, candidates)


def taylor_regions(geom: HeadGeometry, targets: Sequence[Target], masks: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """M ∩ slices per target: the pool the Taylor selection ranks (no importance filter applies)."""
    return {t.name: _slice_region(geom, t, masks) for t in targets}


def plan_taylor(
    geom: HeadGeometry,
    targets: Sequence[Target],
    masks: Mapping[str, torch.Tensor],
    utility: Mapping[str, torch.Tensor] | None,
    scores: Mapping[str, torch.Tensor],
    k: int,
    config: RealignConfig,
) -> RestorePlan:
    """The ``k`` positions of M ∩ slices with the highest Taylor restore score across all targets (pure).

    ``scores[name]`` holds the scores of the target's region positions in ``region`` (row-major) order,
    as :func:`hsr.realign.taylor.taylor_scores` gives them; NaN counts lowest, ties go to the earlier
    matrix, then the lower index (as with ``budget``). With ``preserve_nm`` the N:M limit (keeping the
    highest scores of each group) comes first and the re-pruning after, as on the default path."""
    nm = _nm_pattern(config, (_mask_of(masks, t) for t in targets if t.name in masks)) if config.preserve_nm else None
    restore = PackedMasks()
    kept: dict[str, torch.Tensor] = {}
    candidates = 0
    for t in targets:
        region = _slice_region(geom, t, masks)
        s = scores[t.name]
        if s.numel() != int(region.sum()):
            raise RealignError(f"Taylor scores for {t.name} hold {s.numel():,} values, its region {int(region.sum()):,}.")
        candidates += s.numel()
        if nm is not None and region.any():
            full = torch.full(t.shape, math.nan, dtype=s.dtype)
            full[region] = s
            region = limit_per_group(region, full, *nm)
            s = full[region]
        kept[t.name] = torch.nan_to_num(s, nan=-math.inf)
        restore[t.name] = region
    restore = _apply_budget(restore, kept, k)
    repruned = _repruned(targets, restore, masks, utility, nm[1]) if nm is not None else PackedMasks()
    return RestorePlan(restore, {t.name: t for t in targets}, repruned, nm, candidates)


def _taylor_selection(
    pairs: dict[str, tuple[Any, Any]], pruned: LoadedModel, geom: HeadGeometry, targets: Sequence[Target],
    masks: Mapping[str, torch.Tensor], utility: Mapping[str, torch.Tensor] | None, default: RestorePlan,
    refusals: Sequence[Sample] | None, max_length: int, config: RealignConfig,
) -> tuple[RestorePlan, dict[str, Any]]:
    """The Taylor plan with the default plan's budget (or ``config.budget``), and what it did."""
    if not refusals:
        raise RealignError("selection=taylor needs refusal samples (harmful prompts with refusal responses: the "
                           "safety data) to take the refusal loss's gradient on; none were given.")
    set_difference = count_masked(default.restore)
    k = config.budget if config.budget is not None else set_difference
    regions = taylor_regions(geom, targets, masks)
    taylor = taylor_scores(pruned.model, pruned.processor, {n: pairs[n][0].weight for n in regions}, regions,
                           refusals, max_length)
    plan = plan_taylor(geom, targets, masks, utility, taylor.scores, k, config)
    predicted = 0.0
    for name, region in regions.items():
        chosen = plan.restore[name][region]
        predicted += float(taylor.scores[name][chosen].sum()) if chosen.any() else 0.0
    stats = {
        "k": k,
        "k_from": "budget" if config.budget is not None else "set_difference",
        "set_difference_restored": set_difference,
        "region_params": plan.candidates,
        "overlap_with_set_difference": sum(int((plan.restore[n] & default.restore[n]).sum()) for n in plan.restore),
        "samples": taylor.samples,
        "refusal_loss": taylor.loss,
        "predicted_loss_drop": predicted,
    }
    log.info("Taylor selection: %d of %d pruned weights in the heads' slices (set difference: %d, shared: %d); "
             "predicted refusal-loss drop %.4g from %.4g.", count_masked(plan.restore), plan.candidates,
             set_difference, stats["overlap_with_set_difference"], predicted, taylor.loss)
    return plan, stats


def _restore_bias(geom: HeadGeometry, target: Target, dlin: Any, plin: Any, r: torch.Tensor, whole_head: bool) -> torch.Tensor | None:
    """Copy back the zeroed q/k/v bias entries of rows with a restored weight (every slice row in
    whole-head mode); None when the matrix has no head-sliced bias."""
    if plin.bias is None or target.heads is None:
        return None
    rows = head_bias_mask(geom, target.rel, target.heads, plin.bias.shape[0])
    if rows is None:
        return None
    zeroed = (plin.bias.detach().cpu() == 0) & (dlin.bias.detach().cpu() != 0)
    b = zeroed & rows & (rows if whole_head else r.any(dim=1))
    if b.any():
        plin.bias.data[b.to(plin.bias.device)] = dlin.bias.detach()[b.to(dlin.bias.device)].to(plin.bias.device, plin.bias.dtype)
    return b


@torch.no_grad()
def apply_restore(
    pairs: dict[str, tuple[Any, Any]], plan: RestorePlan, geom: HeadGeometry, whole_head: bool,
    models: tuple[Any, Any] | None = None,
) -> dict[str, torch.Tensor]:
    """Copy the planned dense values into the pruned model (in place) and zero the planned re-pruned
    weights; bias entries follow their rows. ``models`` (dense, pruned) lets offloaded layers be
    materialized one at a time and the pruned model's changes be written back
    (:func:`hsr.placement.onloaded_each`). Returns the restored bias entries per matrix."""
    restored_bias: dict[str, torch.Tensor] = {}
    names = onloaded_each(models, list(plan.restore), (False, True)) if models else list(plan.restore)
    for name in names:
        r = plan.restore[name]
        dlin, plin = pairs[name]
        pw = plin.weight
        if r.any():
            pw.data[r.to(pw.device)] = dlin.weight.detach()[r.to(dlin.weight.device)].to(pw.device, pw.dtype)
        if plan.nm is not None:
            x = plan.repruned[name]
            if x.any():
                pw.data[x.to(pw.device)] = 0
        b = _restore_bias(geom, plan.targets[name], dlin, plin, r, whole_head)
        if b is not None:
            restored_bias[name] = b
    return restored_bias


class RealignedMasks(LazyMapping):
    """The pruning mask once restored positions are un-pruned and re-pruned ones added, computed per
    matrix when read: unchanged matrices come straight from the input masks (packed bits included)."""

    def __init__(self, masks: Mapping[str, torch.Tensor], restore: Mapping[str, torch.Tensor],
                 repruned: Mapping[str, torch.Tensor]) -> None:
        self._masks, self._restore, self._repruned = masks, restore, repruned
        self._names = masks

    def _changed(self, name: str) -> bool:
        return name in self._restore or name in self._repruned

    def __getitem__(self, name: str) -> torch.Tensor:
        new = self._masks[name].bool().cpu().clone()
        if name in self._restore:
            new &= ~self._restore[name]
        if name in self._repruned:
            new |= self._repruned[name]
        return new

    def packed(self, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        if self._changed(name):
            new = self[name]
            return pack_mask(new), tuple(new.shape)
        return packed_mask(self._masks, name), mask_shape(self._masks, name)

    def shape(self, name: str) -> tuple[int, ...]:
        return mask_shape(self._masks, name)


def masks_after_restore(
    masks: Mapping[str, torch.Tensor], restore: Mapping[str, torch.Tensor], repruned: Mapping[str, torch.Tensor]
) -> RealignedMasks:
    """The pruning mask once restored positions are un-pruned and re-pruned ones added (read lazily)."""
    return RealignedMasks(masks, restore, repruned)


def _check_masks(masks: Mapping[str, torch.Tensor], pairs: dict[str, tuple[Any, Any]], class_name: str) -> None:
    for name in masks:
        if name not in pairs:
            raise RealignError(f"The mask names {name}, which is not a decoder linear of {class_name}.")
        if mask_shape(masks, name) != tuple(pairs[name][1].weight.shape):
            raise RealignError(f"Mask for {name} has shape {mask_shape(masks, name)}, the weight {tuple(pairs[name][1].weight.shape)}.")


@torch.no_grad()
def realign_pruned(
    dense: LoadedModel,
    pruned: LoadedModel,
    masks: Mapping[str, torch.Tensor] | None,
    head_ranking: Sequence[tuple[int, int]],
    utility: Mapping[str, torch.Tensor] | None,
    safety: Mapping[str, torch.Tensor] | None,
    config: RealignConfig,
    refusals: Sequence[Sample] | None = None,
    max_length: int = DEFAULT_MAX_LENGTH,
) -> RealignResult:
    """Restore safety-critical pruned weights of ``pruned.model`` (in place) from ``dense.model``.

    ``head_ranking`` is the full ranked list (most safety-critical first); the first ``top_h`` are
    used, or ``top_h`` seeded-random heads with ``config.random_heads``. ``masks`` (True = pruned)
    None means: infer from the weights (zero in pruned, nonzero in dense). ``refusals`` (harmful
    prompts with refusal responses, cut to ``max_length`` tokens) are read only by
    ``selection="taylor"``.
    """
    config.validate()
    pairs = check_compatible(dense.model, pruned.model)
    check_related(dense.model, pruned.model, pairs)
    arch = pruned.arch
    mask_source = getattr(masks, "source", "given")
    if masks is None:
        masks, mask_source = infer_masks(dense.model, pruned.model), "inferred"
    _check_masks(masks, pairs, arch.class_name)
    geom = arch.geometry
    heads = select_heads(head_ranking, config.top_h, arch.num_layers, arch.num_heads, config.random_heads, config.seed)
    targets = restore_targets(arch, heads, config.include_mlp)
    plan = plan_restore(geom, targets, masks, utility, safety, config)
    candidates, taylor = plan.candidates, None
    if config.selection == TAYLOR:
        plan, taylor = _taylor_selection(pairs, pruned, geom, targets, masks, utility, plan, refusals, max_length, config)
    restored_bias = apply_restore(pairs, plan, geom, config.whole_head, (dense.model, pruned.model))
    masks_after = masks_after_restore(masks, plan.restore, plan.repruned)
    lm_params = arch.language_model_param_count(pruned.model)
    summary: dict[str, Any] = {
        "hsr_version": __version__,
        "model": pruned.source,
        "dense_model": dense.source,
        "architecture": arch.class_name,
        "config": asdict(config),
        "mask_source": mask_source,
        "heads": [
            {"layer": layer, "head": head, **({} if config.random_heads else {"rank": i + 1})}
            for i, (layer, head) in enumerate(heads)
        ],
        "head_selection": "random" if config.random_heads else "top-ranked",
        "nm_pattern": f"{plan.nm[0]}:{plan.nm[1]}" if plan.nm else None,
        "selection": config.selection,
        "candidates_in_slices": candidates,
        "pruned_params_before": count_masked(masks),
        "pruned_params_after": count_masked(masks_after),
    }
    if taylor is not None:
        summary["taylor"] = taylor
    summary.update(account(arch, heads, plan.restore, restored_bias, plan.repruned, lm_params))
    log.info(
        "Restored %d parameters (%.4f per ten-thousand of %d language-model parameters) in %d heads.",
        summary["restored_params"], summary["restored_per_ten_thousand"], lm_params, len(heads),
    )
    return RealignResult(masks_after, plan.restore, summary, plan.repruned if plan.nm else {}, restored_bias)


def save_realigned(out: str | Path, pruned_loaded: LoadedModel, result: RealignResult, overwrite: bool = False) -> Path:
    """Write the realigned model like a pruned one: weights, processor, new mask, restored positions, summary."""
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        save_model(pruned_loaded.model, tmp)
        pruned_loaded.processor.save_pretrained(tmp)
        save_masks(result.masks_after, tmp / MASK_FILE)
        save_masks(result.restored, tmp / RESTORED_FILE)
        write_json(tmp / SUMMARY_FILE, result.summary)
    return Path(out).expanduser().resolve()
