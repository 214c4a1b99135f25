"""Head ablation through forward hooks, never through forked attention code.

Two modes (DESIGN.md 1.2):

* ``zero``: the head's slice of the ``o_proj`` input (its attention output) is multiplied by a gate
  (``eps``, default 0), which equals zeroing that head's ``o_proj`` input columns.
* ``uniform``: the head's query is multiplied by a gate (``eps``, default 1e-5) after any ``q_norm``,
  so its attention logits collapse and it attends uniformly ("undifferentiated attention").
  RoPE is linear in the query, so scaling before the rotation equals scaling after it.

Gates act on query heads, so under GQA only query head ``h`` is touched, never its KV group.
A gate is a tensor of shape ``[H]`` (same for every batch row) or ``[B, H]`` (one row per batch
element: the fast engine ablates a different head in each row of one forward).
"""

from __future__ import annotations

import contextlib
from typing import Iterable, Iterator, Mapping

import torch
from torch import nn

from ..architecture import ArchInfo
from ..errors import ConfigError

MODES: tuple[str, ...] = ("zero", "uniform")
DEFAULT_EPS: dict[str, float] = {"zero": 0.0, "uniform": 1e-5}


def default_eps(mode: str) -> float:
    check_mode(mode)
    return DEFAULT_EPS[mode]


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ConfigError(f"Unknown ablation mode {mode!r}; choose one of {', '.join(MODES)}.")


def scale_heads(
    x: torch.Tensor, gate: torch.Tensor, num_heads: int, head_dim: int, heads_first: bool = False
) -> torch.Tensor:
    """Multiply each head's slice of ``x`` by its gate.

    ``x`` is ``[B, T, H*d_h]`` (a projection's input/output), ``[B, T, H, d_h]`` (after a per-head
    ``q_norm``) or, with ``heads_first``, ``[B, H, T, d_h]`` (Gemma-3's ``q_norm``); ``gate`` is
    ``[H]`` or ``[B, H]``.
    """
    shape = x.shape
    if heads_first:
        if x.dim() != 4 or shape[1] != num_heads or shape[-1] != head_dim:
            raise RuntimeError(f"expected [B, {num_heads}, T, {head_dim}] queries, got {tuple(shape)}")
        g = gate.to(dtype=x.dtype, device=x.device)
        return x * (g.view(1, num_heads, 1, 1) if g.dim() == 1 else g.view(g.shape[0], num_heads, 1, 1))
    if shape[-1] == num_heads * head_dim:
        xv = x.reshape(*shape[:-1], num_heads, head_dim)
    elif x.dim() >= 2 and tuple(shape[-2:]) == (num_heads, head_dim):
        xv = x
    else:
        raise RuntimeError(f"cannot split a tensor of shape {tuple(shape)} into {num_heads} heads of {head_dim}")
    g = gate.to(dtype=x.dtype, device=x.device)
    if g.dim() == 1:
        g = g.view(num_heads, 1)
    else:
        if g.shape[0] != shape[0]:
            raise RuntimeError(f"per-row gate has {g.shape[0]} rows but the batch has {shape[0]}")
        g = g.view(g.shape[0], *([1] * (xv.dim() - 3)), num_heads, 1)
    return (xv * g).reshape(shape)


@contextlib.contextmanager
def head_gates(arch: ArchInfo, gates: Mapping[int, torch.Tensor], mode: str = "zero") -> Iterator[None]:
    """Apply ``gates[layer]`` (``[H]`` or ``[B, H]``) to that layer's heads while the block runs.

    Hooks are always removed, even when the block raises.
    """
    check_mode(mode)
    H, dh = arch.num_heads, arch.head_dim
    handles = []

    def pre_hook(gate: torch.Tensor):
        def hook(_mod: nn.Module, args: tuple) -> tuple:
            return (scale_heads(args[0], gate, H, dh), *args[1:])

        return hook

    def out_hook(gate: torch.Tensor, heads_first: bool):
        def hook(_mod: nn.Module, _args: tuple, out: torch.Tensor) -> torch.Tensor:
            return scale_heads(out, gate, H, dh, heads_first)

        return hook

    try:
        for layer, gate in gates.items():
            if not 0 <= layer < arch.num_layers:
                raise ConfigError(f"layer {layer} out of range (the model has {arch.num_layers} layers).")
            if gate.shape[-1] != H:
                raise ConfigError(f"gate for layer {layer} has {gate.shape[-1]} entries, expected {H} heads.")
            attn = arch.attention(layer)
            if mode == "zero":
                handles.append(attn.o_proj.register_forward_pre_hook(pre_hook(gate)))
            else:
                query = arch.query_point(layer)
                handles.append(query.module.register_forward_hook(out_hook(gate, query.heads_first)))
        yield
    finally:
        for h in handles:
            h.remove()


def gates_for(arch: ArchInfo, heads: Iterable[tuple[int, int]], eps: float) -> dict[int, torch.Tensor]:
    """``{layer: [H] gate}`` with ``eps`` at every listed head and 1 elsewhere."""
    gates: dict[int, torch.Tensor] = {}
    for layer, head in heads:
        if not 0 <= head < arch.num_heads:
            raise ConfigError(f"head {head} out of range (the model has {arch.num_heads} query heads per layer).")
        gate = gates.setdefault(int(layer), torch.ones(arch.num_heads))
        gate[head] = eps
    return gates


@contextlib.contextmanager
def ablate_heads(
    arch: ArchInfo, heads: Iterable[tuple[int, int]], mode: str = "zero", eps: float | None = None
) -> Iterator[None]:
    """Ablate the listed ``(layer, head)`` pairs (every batch row alike) while the block runs."""
    eps = default_eps(mode) if eps is None else eps
    with head_gates(arch, gates_for(arch, heads, eps), mode):
        yield
