"""Head-gate gradients computed one decoder layer at a time, for models whose layers are offloaded.

A plain backward through the whole stack keeps every layer's weights alive until the backward
reaches it (autograd saves them for the input gradients), so with accelerate's CPU/disk offload the
gradient pass of the approximate engine would hold the whole model. Here the forward runs without a
graph and keeps only each layer's input; the backward then walks the layers in reverse, onloading
one, re-running it with a graph on its saved input and pulling the incoming gradient through it
(layer-granular gradient checkpointing). Memory: one layer + every layer's input activations; cost:
one extra forward. The gradients are those of the whole-stack backward (same operations, same order).
"""

from __future__ import annotations

from typing import Callable

import torch

from ..architecture import final_norm
from ..calibration import layers_onloaded


def layerwise_gate_grads(
    engine,
    hidden: torch.Tensor,
    kwargs_of: Callable[[int], dict],
    ends: torch.Tensor,
    loss_fn: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """``[R, L, H]``: the gradient of ``loss_fn(y)`` with respect to per-row head gates (all at 1), where
    ``y`` ``[R, d]`` are the final normed states at positions ``ends`` of the rows ``hidden`` ``[R, T, d]``
    entering layer 0 (``kwargs_of(i)``: layer ``i``'s kwargs for these rows; ``engine``: a FastEngine)."""
    arch = engine.arch
    L, H, R = arch.num_layers, arch.num_heads, hidden.shape[0]
    inputs: list[torch.Tensor] = []
    with torch.no_grad():
        for i in layers_onloaded(arch):
            inputs.append(hidden)
            hidden = engine.forward_layers(i, i + 1, hidden, kwargs_of, {})
    rows = torch.arange(R, device=hidden.device)
    grads = torch.zeros(R, L, H, dtype=torch.float32)
    with torch.enable_grad():
        out = hidden.detach().requires_grad_()
        y = final_norm(arch)(out[rows, ends][:, None, :])[:, 0, :]
        (adjoint,) = torch.autograd.grad(loss_fn(y), out)
        for i in layers_onloaded(arch, reverse=True):
            x = inputs.pop().detach().requires_grad_(i > 0)
            gate = torch.ones(R, H, device=x.device, requires_grad=True)
            res = engine.forward_layers(i, i + 1, x, kwargs_of, {i: gate})
            wanted = [gate, x] if i > 0 else [gate]
            got = torch.autograd.grad(res, wanted, grad_outputs=adjoint)
            grads[:, i] = got[0].float().cpu()
            adjoint = got[1] if i > 0 else adjoint
    return grads
