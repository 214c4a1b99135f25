"""The pruning mask of a pruned checkpoint: hsr's own ``mask.safetensors``, or inferred from weights.

HSR needs no pruning of its own (DESIGN.md 1.3): given the dense model and any pruned checkpoint
of the same architecture, a weight counts as pruned when it is zero in the pruned model but not in
the dense one. Weights that are zero in both are left out of the mask (restoring them would copy a
zero). The pruned model's other weights may differ from the dense (SparseGPT updates them); that
is expected and left alone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..architecture import describe
from ..errors import HsrError
from ..io import MaskFile, PackedMasks, mask_shape, packed_mask
from ..placement import onloaded_each
from ..pruning.prune import MASK_FILE

log = logging.getLogger(__name__)


class ModelMismatchError(HsrError, ValueError):
    """The dense and pruned models do not share an architecture or tensor shapes."""


def check_compatible(dense: nn.Module, pruned: nn.Module) -> dict[str, tuple[nn.Linear, nn.Linear]]:
    """Raise :class:`ModelMismatchError` naming the first differing tensor; return paired decoder linears."""
    da, pa = describe(dense), describe(pruned)
    if da.class_name != pa.class_name:
        raise ModelMismatchError(
            f"Dense model is {da.class_name} but the pruned model is {pa.class_name}; they must share an architecture."
        )
    for field in ("num_layers", "num_heads", "num_kv_heads", "head_dim", "hidden_size"):
        if getattr(da, field) != getattr(pa, field):
            raise ModelMismatchError(
                f"Dense and pruned {da.class_name} differ in {field}: {getattr(da, field)} vs {getattr(pa, field)}."
            )
    dl, pl = da.decoder_linears(include_mlp=True), pa.decoder_linears(include_mlp=True)
    pairs: dict[str, tuple[nn.Linear, nn.Linear]] = {}
    for name, d in dl.items():
        p = pl.get(name)
        if p is None:
            raise ModelMismatchError(f"Pruned model has no {name} (the dense model does).")
        for kind in ("weight", "bias"):
            dt, pt = getattr(d, kind, None), getattr(p, kind, None)
            if (dt is None) != (pt is None):
                raise ModelMismatchError(f"{name}.{kind}: present in only one of the dense and pruned models.")
            if dt is not None and dt.shape != pt.shape:
                raise ModelMismatchError(
                    f"{name}.{kind}: shape {tuple(dt.shape)} in the dense model but {tuple(pt.shape)} in the pruned one."
                )
        pairs[name] = (d, p)
    return pairs


#: Kept weights sampled per checked matrix, and the matrices checked (first, middle, last decoder linear).
RELATED_SAMPLE, RELATED_MATRICES = 4096, 3
#: A pruned model made from the dense one keeps most weights exactly (Wanda, magnitude) or close to it
#: (SparseGPT's updates): sampled kept weights either mostly equal the dense ones or correlate with them.
#: Two independently trained or initialized models give a correlation near 0.
MIN_EQUAL_SHARE, MIN_CORRELATION = 0.5, 0.5


def relatedness(dense_values: torch.Tensor, pruned_values: torch.Tensor) -> tuple[float, float]:
    """``(share exactly equal, Pearson correlation)`` of paired weight samples (pure, for the check below)."""
    d, p = dense_values.double(), pruned_values.double()
    equal = float((d == p).double().mean())
    d, p = d - d.mean(), p - p.mean()
    denom = float(d.norm() * p.norm())
    return equal, (float((d * p).sum()) / denom) if denom > 0 else (1.0 if equal == 1.0 else 0.0)


@torch.no_grad()
def unrelated_problem(dense: nn.Module, pruned: nn.Module, pairs: dict[str, tuple[nn.Linear, nn.Linear]]) -> str | None:
    """None when ``pruned`` looks made from ``dense``; else why not. Checks a seeded sample of the kept
    (nonzero) weights of a few matrices, so it costs milliseconds whatever the model size: restoring
    an unrelated model's weights would paste foreign values in without a word."""
    names = list(pairs)
    if not names:
        return None
    picked = list(dict.fromkeys(names[i] for i in (0, len(names) // 2, len(names) - 1)))[:RELATED_MATRICES]
    gen = torch.Generator().manual_seed(0)
    ds, ps = [], []
    for name in onloaded_each((dense, pruned), picked):
        d = pairs[name][0].weight.detach().reshape(-1)
        p = pairs[name][1].weight.detach().reshape(-1)
        idx = torch.randint(0, d.numel(), (min(RELATED_SAMPLE, d.numel()),), generator=gen).to(d.device)
        dv, pv = d[idx].float().cpu(), p[idx.to(p.device)].float().cpu()
        kept = pv != 0
        ds.append(dv[kept])
        ps.append(pv[kept])
    dv, pv = torch.cat(ds), torch.cat(ps)
    if dv.numel() < 32:  # (almost) everything pruned: nothing to compare
        return None
    equal, corr = relatedness(dv, pv)
    if equal >= MIN_EQUAL_SHARE or corr >= MIN_CORRELATION:
        return None
    return (f"of {dv.numel()} sampled kept weights in {', '.join(picked)}, {100 * equal:.0f}% equal the dense model's "
            f"and their correlation is {corr:.2f} (a pruned copy keeps them, or nearly)")


def check_related(dense: nn.Module, pruned: nn.Module, pairs: dict[str, tuple[nn.Linear, nn.Linear]]) -> None:
    """Refuse a dense/pruned pair whose kept weights say they are different models."""
    problem = unrelated_problem(dense, pruned, pairs)
    if problem is not None:
        raise ModelMismatchError(f"The pruned model was not made from this dense model: {problem}. Pass the dense "
                                 "model it was pruned from.")


def infer_mask(dense_weight: torch.Tensor, pruned_weight: torch.Tensor) -> torch.Tensor:
    """True where the pruned weight is zero and the dense one is not."""
    d = dense_weight.detach().cpu()
    p = pruned_weight.detach().cpu()
    return (p == 0) & (d != 0)


@torch.no_grad()
def infer_masks(dense: nn.Module, pruned: nn.Module, names: Sequence[str] | None = None) -> PackedMasks:
    """Masks (True = pruned) of every decoder linear (or of ``names``), read off the weights and held
    bit-packed (as ``bool`` tensors they would be a quarter of the fp32 model)."""
    pairs = check_compatible(dense, pruned)
    masks = PackedMasks()
    total = 0
    for name in onloaded_each((dense, pruned), list(pairs) if names is None else list(names)):
        mask = infer_mask(pairs[name][0].weight, pairs[name][1].weight)
        total += int(mask.sum())
        masks[name] = mask
    if total == 0 and names is None:
        log.warning("The pruned model has no weights zeroed relative to the dense model; nothing can be restored.")
    return masks


def _mask_fits(masks: Mapping[str, torch.Tensor], pairs: dict[str, tuple[nn.Linear, nn.Linear]],
               pruned: nn.Module) -> str | None:
    """None when the saved mask matches the pruned weights; else why not (reads one mask at a time)."""
    for name in masks:
        if name not in pairs:
            return f"it names {name}, which is not a decoder linear of the model"
        if mask_shape(masks, name) != tuple(pairs[name][1].weight.shape):
            return f"{name}: mask shape {mask_shape(masks, name)} but weight shape {tuple(pairs[name][1].weight.shape)}"
    for name in onloaded_each((pruned,), list(masks)):  # offloaded layers are read one at a time
        pw, mask = pairs[name][1].weight, masks[name]
        if bool((pw.detach().cpu()[mask] != 0).any()):
            return f"{name}: weights marked pruned are nonzero in the pruned model"
    return None


class PrunedMasks(Mapping):
    """``{linear name: bool mask}`` that remembers where it came from (``source``, for summary.json):
    "mask file", "inferred" (zero in pruned and nonzero in dense), or "mask file + inferred". Nothing is
    held unpacked: file masks are read when used, inferred ones are kept bit-packed."""

    def __init__(self, source: str, *parts: Mapping[str, torch.Tensor]) -> None:
        self.source = source
        self._parts = parts

    def _part(self, name: str) -> Mapping[str, torch.Tensor]:
        for part in self._parts:
            if name in part:
                return part
        raise KeyError(name)

    def __getitem__(self, name: str) -> torch.Tensor:
        return self._part(name)[name]

    def __contains__(self, name: object) -> bool:
        return any(name in part for part in self._parts)

    def __iter__(self) -> Iterator[str]:
        for i, part in enumerate(self._parts):
            yield from (name for name in part if not any(name in p for p in self._parts[:i]))

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def packed(self, name: str) -> tuple[np.ndarray, tuple[int, ...]]:
        part = self._part(name)
        return packed_mask(part, name), mask_shape(part, name)

    def shape(self, name: str) -> tuple[int, ...]:
        return mask_shape(self._part(name), name)


def _inferred(dense_model: nn.Module, pruned_model: nn.Module) -> PrunedMasks:
    return PrunedMasks("inferred", infer_masks(dense_model, pruned_model))


@torch.no_grad()
def load_pruned_masks(pruned_dir: str | Path | None, dense_model: nn.Module, pruned_model: nn.Module) -> PrunedMasks:
    """The pruned model's masks: ``pruned_dir/mask.safetensors`` when present and consistent, else inferred.

    Linears the mask file does not cover (e.g. MLPs left dense by ``--no-mlp``) are inferred. The file's
    masks are checked here one at a time and read again when used, never all held at once.
    """
    pairs = check_compatible(dense_model, pruned_model)
    path = Path(pruned_dir) / MASK_FILE if pruned_dir is not None else None
    if path is None or not path.is_file():
        return _inferred(dense_model, pruned_model)
    try:
        saved = MaskFile(path)
        problem = _mask_fits(saved, pairs, pruned_model)
    except Exception as exc:  # corrupt or foreign file: fall back to the weights
        log.warning("Could not read %s (%s); inferring the mask from the weights instead.", path, exc)
        return _inferred(dense_model, pruned_model)
    if problem is not None:
        log.warning("%s does not match the pruned model (%s); inferring the mask from the weights.", path, problem)
        return _inferred(dense_model, pruned_model)
    rest = [n for n in pairs if n not in saved]
    if not rest:
        return PrunedMasks("mask file", saved)
    return PrunedMasks("mask file + inferred", saved, infer_masks(dense_model, pruned_model, rest))
