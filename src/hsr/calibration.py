"""Layer-by-layer calibration: capture what enters the first decoder layer, then walk the stack.

Only one decoder layer's activations are alive at a time, so peak memory stays near
model size + one layer's activations for all samples. The first layer's inputs are captured
with every keyword argument the model passes it (attention mask, position ids, rotary
embeddings including Qwen's M-RoPE), so replaying a layer is exactly what the full forward does.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from .architecture import ArchInfo, layer_hidden, model_device
from .data import Encoded


@dataclass
class LayerInput:
    """Hidden states entering a decoder layer for one sample, the layer's kwargs, and a token mask."""

    hidden: torch.Tensor  # [1, T, d]
    kwargs: dict[str, Any]
    token_mask: torch.Tensor  # bool [T]: tokens whose activations count


class _Captured(Exception):
    pass


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


@torch.no_grad()
def capture_layer0_inputs(
    model: nn.Module, arch: ArchInfo, encoded: Sequence[Encoded], response_only: bool = False
) -> list[LayerInput]:
    """Run the model up to decoder layer 0 for each sample and keep its inputs.

    ``response_only`` restricts later statistics to response tokens (importance scores);
    otherwise every real token counts (pruning calibration).
    """
    device = model_device(model)
    captured: list[LayerInput] = []
    store: dict[str, Any] = {}

    def hook(_mod: nn.Module, args: tuple, kwargs: dict) -> None:
        hidden = args[0] if args else kwargs.pop("hidden_states")
        kw = dict(kwargs)
        kw.pop("hidden_states", None)
        kw["use_cache"] = False
        kw["past_key_values"] = None
        store["hidden"], store["kwargs"] = hidden, kw
        raise _Captured

    handle = arch.layers[0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        for enc in encoded:
            inputs = _to(enc.inputs, device)
            try:
                model(**inputs, use_cache=False)
            except _Captured:
                pass
            else:  # pragma: no cover - the hook always fires
                raise RuntimeError("decoder layer 0 was never called")
            if response_only:
                mask = enc.response_mask[0]
            else:
                mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))[0].bool()
            captured.append(LayerInput(store["hidden"].detach(), store["kwargs"], mask.to(device)))
    finally:
        handle.remove()
    return captured


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: Sequence[LayerInput]) -> list[LayerInput]:
    """Apply one decoder layer to every sample; returns the next layer's inputs."""
    return [LayerInput(layer_hidden(layer(x.hidden, **x.kwargs)), x.kwargs, x.token_mask) for x in inputs]


@contextlib.contextmanager
def linear_input_hooks(
    linears: dict[str, nn.Linear],
    on_input: Callable[[str, torch.Tensor], None],
    token_mask: Callable[[], torch.Tensor | None] = lambda: None,
) -> Iterator[None]:
    """Feed each linear's input rows to ``on_input(name, x2d)``, keeping only tokens in ``token_mask()``."""
    handles = []

    def make(name: str) -> Callable:
        def hook(_mod: nn.Module, args: tuple) -> None:
            x = args[0]
            x2d = x.reshape(-1, x.shape[-1])
            mask = token_mask()
            if mask is not None:
                x2d = x2d[mask.reshape(-1)]
            on_input(name, x2d)

        return hook

    try:
        for name, mod in linears.items():
            handles.append(mod.register_forward_pre_hook(make(name)))
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def collect_layer_statistics(
    layer: nn.Module, inputs: Sequence[LayerInput], linears: dict[str, nn.Linear], on_input: Callable[[str, torch.Tensor], None]
) -> None:
    """Run ``layer`` over all samples, feeding each linear's (masked) input rows to ``on_input``."""
    current: dict[str, torch.Tensor | None] = {"mask": None}
    with linear_input_hooks(linears, on_input, lambda: current["mask"]):
        for x in inputs:
            current["mask"] = x.token_mask
            layer(x.hidden, **x.kwargs)


class InputNormAccumulator:
    """Per-linear running sum of squared inputs per input feature (Wanda's ||X_j||^2)."""

    def __init__(self) -> None:
        self.sq: dict[str, torch.Tensor] = {}
        self.count: dict[str, int] = {}

    def __call__(self, name: str, x2d: torch.Tensor) -> None:
        x = x2d.float()
        s = (x * x).sum(0)
        self.sq[name] = self.sq[name] + s if name in self.sq else s
        self.count[name] = self.count.get(name, 0) + x.shape[0]

    def norms(self, name: str) -> torch.Tensor:
        """||X_j||_2 over all collected tokens."""
        return self.sq[name].sqrt()


class HessianAccumulator:
    """Per-linear H = (2/n) X^T X, accumulated as a running mean (SparseGPT's Hessian)."""

    def __init__(self) -> None:
        self.h: dict[str, torch.Tensor] = {}
        self.n: dict[str, int] = {}

    def __call__(self, name: str, x2d: torch.Tensor) -> None:
        x = x2d.double()
        k = x.shape[0]
        if k == 0:
            return
        n_old = self.n.get(name, 0)
        n_new = n_old + k
        contrib = (2.0 / n_new) * (x.T @ x)
        if name in self.h:
            self.h[name] = self.h[name] * (n_old / n_new) + contrib
        else:
            self.h[name] = contrib
        self.n[name] = n_new
