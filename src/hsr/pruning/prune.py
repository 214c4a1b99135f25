"""Sequential layer-by-layer pruning of a model's language decoder, and saving the result.

A layer's calibration inputs are the outputs of the already-pruned layers before it
(DESIGN.md 1.1). Only decoder linears are touched: never the vision side, embeddings or lm_head.
"""

from __future__ import annotations

import logging
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from .. import __version__
from ..calibration import LayerInput, LayerStep, capture_inputs, collect_layer_statistics, walk_layers
from ..data import DEFAULT_MAX_LENGTH, Sample, encode
from ..errors import ConfigError
from ..io import PackedMasks, atomic_output_dir, save_masks, write_json
from ..loading import LoadedModel
from ..options import check_declared, option, seed_option
from ..placement import is_offloaded, onloaded, save_model
from .masks import Sparsity
from .methods import METHODS, get_method

log = logging.getLogger(__name__)

MASK_FILE = "mask.safetensors"
SUMMARY_FILE = "summary.json"


@dataclass
class PruneConfig:
    """How to prune; every field is also a ``hsr prune`` flag and a ``prune.`` key of ``hsr run``."""

    method: str = option("wanda", help="pruning method", choices=METHODS)
    sparsity: Sparsity = option(help="unstructured ratio in [0,1) or N:M such as 2:4",
                                factory=lambda: Sparsity(ratio=0.5))
    max_length: int = option(DEFAULT_MAX_LENGTH, help="cap on tokens per sample", minimum=1)
    seed: int = seed_option(help="random seed (data subsets, ties)")
    include_mlp: bool = option(True, help="also prune the MLP projections (--no-mlp: attention only)", flag="mlp")
    block_size: int = option(128, help="SparseGPT column block size", minimum=1)
    percdamp: float = option(0.01, help="SparseGPT Hessian dampening (fraction of the mean diagonal)")

    def validate(self) -> None:
        check_declared(self)
        if not 0 < self.percdamp < 1:
            raise ConfigError(f"percdamp must be in (0, 1), got {self.percdamp}.")


@dataclass
class PruneResult:
    masks: dict[str, torch.Tensor] | PackedMasks  # PackedMasks (bit-packed, same mapping) for offloaded models
    summary: dict[str, Any]


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch so that runs repeat exactly."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _calibration_inputs(loaded: LoadedModel, samples: Sequence[Sample], max_length: int) -> list[LayerInput]:
    # Calibrate on whole conversations (prompt + response when there is one): every real token counts.
    encoded = [encode(loaded.processor, s, include_response=bool(s.response), max_length=max_length) for s in samples]
    return capture_inputs(loaded.model, loaded.arch, encoded, response_only=False)


@torch.no_grad()
def prune_model(
    loaded: LoadedModel, samples: Sequence[Sample], config: PruneConfig, progress: bool = True
) -> PruneResult:
    """Prune ``loaded.model`` in place and return the masks (True = pruned) and a summary."""
    config.validate()
    seed_everything(config.seed)
    arch = loaded.arch
    method = get_method(config.method)
    if method.needs_data and not samples:
        raise ConfigError(f"{config.method} needs calibration data; pass --data.")
    inputs = _calibration_inputs(loaded, samples, config.max_length) if method.needs_data else []
    # An offloaded model's masks are kept bit-packed: as bool tensors they would be a quarter of its fp32 size.
    masks: dict[str, torch.Tensor] | PackedMasks = PackedMasks() if is_offloaded(loaded.model) else {}
    # Each layer is calibrated on the outputs of the already-pruned layers before it.
    steps = walk_layers(arch, inputs, modifies=True) if method.needs_data else _data_free_steps(arch)
    bar = tqdm(steps, total=arch.num_layers, desc=f"prune[{config.method} {config.sparsity.describe()}]",
               disable=not progress)
    for step in bar:
        linears = arch.layer_linears(step.index, include_mlp=config.include_mlp)
        stats = method.statistics() if method.needs_data else None
        if stats is not None:
            collect_layer_statistics(step.layer, step.inputs, linears, stats)
        for rel, linear in linears.items():
            new, mask = method.prune(linear.weight.data, stats, rel, config)
            linear.weight.data.copy_(new)
            masks[arch.full_name(step.index, rel)] = mask.cpu()
    return PruneResult(masks, summarize(loaded, masks, config, n_samples=len(samples)))


def _data_free_steps(arch: Any) -> Iterator[LayerStep]:
    """Layers without inputs (magnitude pruning), each onloaded for its turn and written back after."""
    for i in range(arch.num_layers):
        with onloaded(arch.layers[i], write_back=True):
            yield LayerStep(i, arch.layers[i], [])


def summarize(loaded: LoadedModel, masks: dict[str, torch.Tensor], config: PruneConfig, **extra: Any) -> dict[str, Any]:
    """Per-linear, per-layer and total sparsity, plus what produced them."""
    arch = loaded.arch
    per_layer: list[dict[str, Any]] = []
    per_linear: dict[str, float] = {}
    total_pruned = total = 0
    for i in range(arch.num_layers):
        pruned = numel = 0
        for rel in arch.linear_names(config.include_mlp):
            mask = masks[arch.full_name(i, rel)]
            per_linear[arch.full_name(i, rel)] = mask.float().mean().item()
            pruned += int(mask.sum())
            numel += mask.numel()
        per_layer.append({"layer": i, "pruned": pruned, "numel": numel, "sparsity": pruned / numel})
        total_pruned += pruned
        total += numel
    cfg = asdict(config)
    cfg["sparsity"] = config.sparsity.describe()
    return {
        "hsr_version": __version__,
        "model": loaded.source,
        "architecture": arch.class_name,
        "config": cfg,
        "pruned_params": total_pruned,
        "prunable_params": total,
        "sparsity": total_pruned / total if total else 0.0,
        "language_model_params": arch.language_model_param_count(loaded.model),
        "per_layer": per_layer,
        "per_linear": per_linear,
        **extra,
    }


def save_pruned(out: str | Path, loaded: LoadedModel, result: PruneResult, overwrite: bool = False) -> Path:
    """Write the pruned model, its processor/tokenizer, the mask and summary.json atomically."""
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        save_model(loaded.model, tmp)
        loaded.processor.save_pretrained(tmp)
        save_masks(result.masks, tmp / MASK_FILE)
        write_json(tmp / SUMMARY_FILE, result.summary)
    return Path(out).expanduser().resolve()
