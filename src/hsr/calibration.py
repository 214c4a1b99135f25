"""Layer-by-layer execution: capture what the model feeds each decoder layer, then walk the stack.

:func:`capture_inputs` runs the model once per sample with every decoder layer replaced by a
pass-through that only records the keyword arguments the model gives that layer (attention mask,
position ids, rotary embeddings incl. Qwen's M-RoPE), so each layer later receives its OWN
arguments: models that mix attention types across layers (sliding-window and global layers,
``config.layer_types``) get each layer's own mask. The vision tower and projector run once.

:func:`layers_onloaded` is the one loop over decoder layers that knows about placement: a layer
accelerate keeps on CPU or disk (:mod:`hsr.placement`) is materialized on the execution device once
for the caller's turn and offloaded again after, with the caller's changes written back when the
walk ``modifies`` weights. :func:`walk_layers` (pruning, importance scores) builds on it: it yields
each layer with every sample's inputs, lets the caller read or modify the layer, then maps the
inputs through the layer (as the caller left it) to the next one, so only one layer's activations
are alive at a time. The fast head engine walks its own rows (shared prefix, prompt groups) with
:func:`layers_onloaded` too (:mod:`hsr.heads.engines`).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import Any, Callable, Iterator, Sequence

import torch
from torch import nn

from .architecture import ArchInfo, layer_hidden

from .placement import model_device, onloaded
from .data import Encoded

#: Cache arguments a replayed layer must not see (layers run without a KV cache here).
_CACHE_KWARGS = ("past_key_values", "past_key_value", "cache")


@dataclass
class LayerInput:
    """One sample at one decoder layer: the hidden states entering it, every layer's own keyword
    arguments for this sample, and the tokens whose activations count."""

    hidden: torch.Tensor  # [1, T, d]
    layer_kwargs: Sequence[dict[str, Any]]  # [num_layers]: what the model passes decoder layer i
    token_mask: torch.Tensor  # bool [T]
    layer: int = 0  # the decoder layer ``hidden`` enters

    @property
    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the layer this input enters."""
        return self.layer_kwargs[self.layer]


class _Stop(Exception):
    pass


def _to(obj: Any, device: torch.device) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.to(device)
    if isinstance(obj, (tuple, list)):
        return type(obj)(_to(o, device) for o in obj)
    if isinstance(obj, dict):
        return {k: _to(v, device) for k, v in obj.items()}
    return obj


def _replay_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    kw = {k: v for k, v in kwargs.items() if k != "hidden_states"}
    for key in _CACHE_KWARGS:
        if key in kw:
            kw[key] = None
    kw["use_cache"] = False
    return kw


@contextlib.contextmanager
def _recording_layers(arch: ArchInfo, record: Callable[[int, torch.Tensor, dict], None]) -> Iterator[None]:
    """Replace each decoder layer's forward by a pass-through that records its inputs (no layer math);
    the original forwards (accelerate's offload wrappers included) are always put back."""
    saved = []

    def make(i: int) -> Callable:
        def passthrough(*args: Any, **kwargs: Any) -> torch.Tensor:
            hidden = args[0] if args else kwargs["hidden_states"]
            record(i, hidden, kwargs)
            return hidden

        return passthrough

    try:
        for i, layer in enumerate(arch.layers):
            saved.append((layer, layer.__dict__.get("forward")))
            layer.forward = make(i)
        yield
    finally:
        for layer, forward in saved:
            if forward is None:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = forward


@torch.no_grad()
def capture_inputs(
    model: nn.Module, arch: ArchInfo, encoded: Sequence[Encoded], response_only: bool = False
) -> list[LayerInput]:
    """Per sample: the hidden states entering decoder layer 0 and every layer's own keyword arguments.

    ``response_only`` restricts later statistics to response tokens (importance scores);
    otherwise every real token counts (pruning calibration).
    """
    device = model_device(model)
    last = arch.num_layers - 1
    captured: list[LayerInput] = []
    store: dict[str, Any] = {}

    def record(i: int, hidden: torch.Tensor, kwargs: dict) -> None:
        if i == 0:
            store["hidden"] = hidden.detach()
        store["kwargs"].append(_replay_kwargs(kwargs))
        if i == last:
            raise _Stop  # the norm and lm_head after the stack are not needed

    with _recording_layers(arch, record):
        for enc in encoded:
            inputs = _to(enc.inputs, device)
            store["kwargs"] = []
            try:
                model(**inputs, use_cache=False)
            except _Stop:
                pass
            if len(store["kwargs"]) != arch.num_layers:
                raise RuntimeError(f"the model called {len(store['kwargs'])} of its {arch.num_layers} decoder layers")
            if response_only:
                mask = enc.response_mask[0]
            else:
                mask = inputs.get("attention_mask", torch.ones_like(inputs["input_ids"]))[0].bool()
            captured.append(LayerInput(store["hidden"], store["kwargs"], mask.to(device)))
    return captured


@torch.no_grad()
def run_layer(layer: nn.Module, inputs: Sequence[LayerInput]) -> list[LayerInput]:
    """Apply one decoder layer to every sample (each with that layer's own kwargs); the next layer's inputs."""
    return [replace(x, hidden=layer_hidden(layer(x.hidden, **x.kwargs)), layer=x.layer + 1) for x in inputs]


@dataclass
class LayerStep:
    """One decoder layer during a walk: its index, the module, and every sample's inputs to it."""

    index: int
    layer: nn.Module
    inputs: list[LayerInput]


def layers_onloaded(
    arch: ArchInfo, start: int = 0, stop: int | None = None, modifies: bool = False, reverse: bool = False
) -> Iterator[int]:
    """Yield the indices ``start..stop-1`` (default: to the last layer; ``reverse``: last first), each
    decoder layer materialized for the caller's whole turn (one load per layer and walk, however many
    forwards the caller runs).

    ``modifies=True`` stores the caller's changes of offloaded layers where accelerate keeps them
    (the walk must then run to its end).
    """
    indices = range(start, arch.num_layers if stop is None else stop)
    for i in reversed(indices) if reverse else indices:
        with onloaded(arch.layers[i], write_back=modifies):
            yield i


def walk_layers(arch: ArchInfo, inputs: list[LayerInput], modifies: bool = False) -> Iterator[LayerStep]:
    """Yield every decoder layer with its inputs; after the caller's turn, the layer as the caller left it
    (e.g. pruned) maps the inputs to the next layer, while it is still materialized."""
    for i in layers_onloaded(arch, modifies=modifies):
        layer = arch.layers[i]
        yield LayerStep(i, layer, inputs)
        if i + 1 < arch.num_layers:
            inputs = run_layer(layer, inputs)


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
