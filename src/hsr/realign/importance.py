"""Per-weight importance on the dense model, from response tokens only (DESIGN.md 1.3).

* Wanda: ``|W_ij| * ||X_j||_2`` where ``X`` holds the inputs of the linear at response tokens
  (prompt and image tokens masked out). Computed layer by layer with inputs from the dense model,
  so peak memory stays near model size + one layer's activations.
* SNIP: ``sum over samples of |W_ij * dL/dW_ij|`` where ``L`` is the mean negative log-likelihood
  of the sample's response tokens (one backward pass per sample).

Scores are float32 CPU tensors shaped like the weights, keyed by full linear names
(``ArchInfo.decoder_linears(include_mlp=True)``), and stored as safetensors.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import nn
from tqdm.auto import tqdm

from ..calibration import InputNormAccumulator, capture_inputs, collect_layer_statistics, walk_layers
from ..placement import is_offloaded, model_device
from ..data import DEFAULT_MAX_LENGTH, Encoded, Sample, encode
from ..errors import ConfigError, HsrError
from ..io import LazyMapping, os_errors_of_saving
from ..loading import LoadedModel
from ..options import option, seed_option
from ..pruning.methods import wanda_scores

log = logging.getLogger(__name__)

IMPORTANCE_METHODS: tuple[str, ...] = ("wanda", "snip")
_FORMAT = "hsr-importance"


class ImportanceError(HsrError):
    """Importance scores could not be computed or read."""


@dataclass
class ImportanceConfig:
    """Which importance score and which data; also ``hsr realign``'s flags and ``hsr run``'s ``importance.`` keys."""

    method: str = option("wanda", help="importance score: wanda (|W| x input norm) or snip (|W x grad|)",
                         choices=IMPORTANCE_METHODS, flag="importance")
    utility_data: str = option("builtin:utility", help="benign prompts + helpful responses (JSONL, vlguard:..., "
                               "builtin:NAME)")
    safety_data: str = option("builtin:safety", help="harmful prompts + refusals (JSONL, vlguard:..., builtin:NAME)")
    limit: int | None = option(32, help="samples per dataset (seeded subset); none = all", minimum=1)
    max_length: int = option(DEFAULT_MAX_LENGTH, help="cap on tokens per sample", minimum=1)
    seed: int = seed_option(help="random seed (data subsets)")


def _encode(loaded: LoadedModel, samples: Sequence[Sample], max_length: int) -> list[Encoded]:
    if not samples:
        raise ConfigError("Importance scores need data with responses; the dataset is empty.")
    encoded = [encode(loaded.processor, s, include_response=True, max_length=max_length) for s in samples]
    if sum(int(e.response_mask.sum()) for e in encoded) == 0:
        raise ImportanceError(
            f"No response tokens left after truncation to max_length={max_length}; raise max_length."
        )
    return encoded


class StreamingScores:
    """Writes float32 scores into one safetensors file as the walk produces them, layer after layer, so
    a placed model's importance never holds more than one layer's scores in RAM. The header is written
    first (names and shapes are known from the model); tensors must arrive in that order."""

    def __init__(self, path: Path, shapes: dict[str, tuple[int, ...]], method: str | None = None) -> None:
        header: dict[str, Any] = {"__metadata__": {"format": f"{_FORMAT}:{method}" if method else _FORMAT}}
        offset = 0
        for name, shape in shapes.items():
            size = 4 * math.prod(shape)
            header[name] = {"dtype": "F32", "shape": list(shape), "data_offsets": [offset, offset + size]}
            offset += size
        text = json.dumps(header, separators=(",", ":")).encode()
        text += b" " * (-len(text) % 8)
        self.order = list(shapes)
        self.path = path
        self._fh = open(path, "wb")
        self._fh.write(struct.pack("<Q", len(text)) + text)

    def __setitem__(self, name: str, tensor: torch.Tensor) -> None:
        if not self.order or self.order[0] != name:
            raise ImportanceError(f"{name} arrived out of order while streaming importance scores.")
        self.order.pop(0)
        self._fh.write(tensor.detach().float().cpu().contiguous().numpy().tobytes())

    def close(self) -> "LazyScores":
        self._fh.close()
        if self.order:
            raise ImportanceError(f"Streaming importance stopped before {self.order[0]}.")
        return LazyScores(self.path)


@torch.no_grad()
def _wanda(loaded: LoadedModel, encoded: list[Encoded], progress: bool, scores: Any = None) -> Any:
    arch = loaded.arch
    inputs = capture_inputs(loaded.model, arch, encoded, response_only=True)
    scores = {} if scores is None else scores
    for step in tqdm(walk_layers(arch, inputs), total=arch.num_layers, desc="importance[wanda]", disable=not progress):
        linears = arch.layer_linears(step.index, include_mlp=True)
        stats = InputNormAccumulator()
        collect_layer_statistics(step.layer, step.inputs, linears, stats)
        for rel, linear in linears.items():
            scores[arch.full_name(step.index, rel)] = wanda_scores(linear.weight.data, stats.norms(rel)).float().cpu()
    return scores


@contextlib.contextmanager
def _grads_only_for(model: nn.Module, params: list[nn.Parameter]) -> Iterator[None]:
    """Enable gradients for ``params`` only; restore every flag and drop the grads afterwards."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _ in saved:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
            p.grad = None
        model.eval()
        yield
    finally:
        for p in params:
            p.grad = None
        for p, flag in saved:
            p.requires_grad_(flag)
        model.train(was_training)


def response_nll(logits: torch.Tensor, input_ids: torch.Tensor, response_mask: torch.Tensor) -> torch.Tensor:
    """Mean next-token NLL over response tokens (token t is predicted from position t-1)."""
    target_mask = response_mask[:, 1:].to(logits.device)
    logp = torch.log_softmax(logits[:, :-1].float(), dim=-1)
    nll = -logp.gather(-1, input_ids[:, 1:].to(logits.device).unsqueeze(-1)).squeeze(-1)
    return nll[target_mask].mean()


def _snip(loaded: LoadedModel, encoded: list[Encoded], progress: bool) -> dict[str, torch.Tensor]:
    model, arch = loaded.model, loaded.arch
    linears = arch.decoder_linears(include_mlp=True)
    params = [lin.weight for lin in linears.values()]
    scores = {name: torch.zeros(lin.weight.shape, dtype=torch.float32) for name, lin in linears.items()}
    device = model_device(model)
    used = 0
    with _grads_only_for(model, params):
        for enc in tqdm(encoded, desc="importance[snip]", disable=not progress):
            if int(enc.response_mask[:, 1:].sum()) == 0:
                continue  # nothing to predict in this (truncated) sample
            inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in enc.inputs.items()}
            logits = model(**inputs, use_cache=False).logits
            loss = response_nll(logits, inputs["input_ids"], enc.response_mask)
            loss.backward()
            with torch.no_grad():
                for name, lin in linears.items():
                    grad = lin.weight.grad
                    if grad is not None:
                        scores[name] += (lin.weight.detach().float() * grad.float()).abs().cpu()
                        lin.weight.grad = None
            used += 1
    if used == 0:
        raise ImportanceError("SNIP needs at least one sample with two or more response tokens; raise max_length.")
    return scores


def compute_importance(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    method: str = "wanda",
    max_length: int = DEFAULT_MAX_LENGTH,
    progress: bool = True,
    out: str | Path | None = None,
) -> dict[str, torch.Tensor] | "LazyScores":
    """Importance of every decoder-linear weight of ``loaded`` (the dense model) on ``samples``.

    Only response tokens count, so every sample needs a response. Returns float32 CPU tensors; with
    ``out`` (Wanda), they are streamed into that safetensors file layer by layer instead and read back
    lazily (bounded memory for offloaded models).
    """
    if method not in IMPORTANCE_METHODS:
        raise ConfigError(f"Unknown importance method {method!r}; choose one of {', '.join(IMPORTANCE_METHODS)}.")
    encoded = _encode(loaded, samples, max_length)
    if out is not None and method == "wanda":
        shapes = {n: tuple(lin.weight.shape) for n, lin in loaded.arch.decoder_linears(include_mlp=True).items()}
        stream = StreamingScores(Path(out), shapes, method)
        try:
            _wanda(loaded, encoded, progress, stream)
        finally:
            stream._fh.close()
        return stream.close()
    if method == "snip" and is_offloaded(loaded.model):
        raise ConfigError("SNIP importance back-propagates through the whole model at once, which offloaded "
                          "weights do not allow; use --importance wanda or drop --max-memory/--offload-folder.")
    if method == "wanda":
        return _wanda(loaded, encoded, progress)
    return _snip(loaded, encoded, progress)


def save_importance(scores: dict[str, torch.Tensor], path: str | Path, method: str | None = None) -> None:
    """Write scores to a safetensors file (float32, contiguous)."""
    tensors = {name: t.detach().float().cpu().contiguous() for name, t in scores.items()}
    # One metadata entry: safetensors writes several in hash order, so equal scores could differ in bytes.
    meta = {"format": f"{_FORMAT}:{method}" if method else _FORMAT}
    with os_errors_of_saving(path):
        save_file(tensors, str(path), metadata=meta)


class LazyScores(LazyMapping):
    """Importance scores read from their file one tensor at a time, on access: realigning an offloaded
    model needs only the matrices of the selected heads' layers, not two model-sized tables in RAM."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with safe_open(str(path), framework="pt") as fh:
            self._names = dict.fromkeys(fh.keys())

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._names:
            raise KeyError(name)
        with safe_open(str(self.path), framework="pt") as fh:
            return fh.get_tensor(name).float()


def load_importance(path: str | Path, lazy: bool = False) -> dict[str, torch.Tensor] | LazyScores:
    """Read scores written by :func:`save_importance`; ``lazy``: read each tensor when it is used."""
    path = Path(path)
    if not path.is_file():
        raise ImportanceError(f"Importance file {path} not found.")
    try:
        if lazy:
            return LazyScores(path)
        out: dict[str, torch.Tensor] = {}
        with safe_open(str(path), framework="pt") as fh:
            for name in fh.keys():
                out[name] = fh.get_tensor(name).float()
    except Exception as exc:  # safetensors raises several error types for corrupt files
        raise ImportanceError(f"{path}: not a readable safetensors importance file ({exc}).") from exc
    return out
