"""First-order (gradient) head importance: one backward pass per prompt scores every head.

Each head gets a gate ``g`` (1 = intact); ablation moves it to ``eps``, i.e. by ``delta = eps - 1``.
The gradients come from one batched forward + backward per prompt with a separate gate copy per
batch row (rows do not interact, so each row's gradient is its own vector-Jacobian product).

* Ships: KL(p || p_g) has zero gradient at the base, so the proxy is its second-order term,
  ``KL ~ 1/2 delta^2 F_hh`` with the Fisher information ``F = J^T (diag p - p p^T) J`` of the
  next-token distribution (J = d logits / d gates). ``diag p - p p^T = sum_y p_y (e_y - p)(e_y - p)^T``
  is split into the ``approx_tokens`` most likely tokens (exact rank-one terms: rows with loss
  ``sqrt(p_y) log p_y``) and the remaining tail, estimated without bias by ``approx_probes`` Gaussian
  probes (loss ``sum_tail sqrt(p_y) z_y log p_y / sqrt(S)``); ``F_hh`` is the sum of squared row
  gradients. The proxy is in KL units (an estimate of the exact score).
* Generalized Ships: with ``M = U S V^T`` (base last-token states, ``N x d``, N <= d), the
  first-order rotation of the top-r left singular subspace under ``M + dM`` moves ``u_i`` (i <= r)
  towards ``u_j`` (j > r) by ``(s_i u_j^T dM v_i + s_j u_i^T dM v_j) / (s_i^2 - s_j^2)``. ``dM v_k``
  for the first m right singular vectors costs m gradient rows per prompt (``y_n . v_k``); terms
  with k > m are dropped (m = N is exact to first order). The proxy is the sum of the arctangents
  of the singular values of that r x (N - r) rotation, in degrees.

The top ``approx_top_k`` heads by proxy are then rescored exactly (see ``score_heads``).
"""

from __future__ import annotations

import math
from typing import Callable

import torch

from ..architecture import final_norm, layer_hidden, lm_head
from .ablation import head_gates
from .engines import FastEngine, expand_batch


def _gated_last_hidden(engine: FastEngine, n: int, gates: torch.Tensor) -> torch.Tensor:
    """Final normed last-token state ``[R, d]`` of prompt ``n`` with per-row gates ``[R, L, H]``."""
    arch = engine.arch
    x = engine.layer0[n]
    rows = gates.shape[0]
    hidden = x.hidden.expand(rows, *x.hidden.shape[1:]).contiguous()
    kwargs = expand_batch(x.kwargs, rows)
    with head_gates(arch, {layer: gates[:, layer, :] for layer in range(arch.num_layers)}, engine.mode):
        for layer in arch.layers:
            hidden = layer_hidden(layer(hidden, **kwargs))
    return final_norm(arch)(hidden[:, -1:, :])[:, 0, :]


def _gate_grads(engine: FastEngine, n: int, rows: int, loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    arch = engine.arch
    device = engine.layer0[n].hidden.device
    gates = torch.ones(rows, arch.num_layers, arch.num_heads, device=device, requires_grad=True)
    with torch.enable_grad():
        y = _gated_last_hidden(engine, n, gates)
        (grad,) = torch.autograd.grad(loss_fn(y), gates)
    return grad.double().cpu()


def ships_proxy(engine: FastEngine, tokens: int, probes: int, seed: int = 0) -> torch.Tensor:
    """Second-order (Fisher) estimate of each head's Ships score, ``[L, H]``."""
    delta = engine.eps - 1.0
    total = torch.zeros(engine.arch.num_layers, engine.arch.num_heads, dtype=torch.float64)
    head = lm_head(engine.loaded.model)
    for n in range(engine.n_prompts):
        p = engine.base_logp[n].double().exp()
        k = min(tokens, p.numel())
        top = torch.topk(p, k).indices
        coef = torch.zeros(k + probes, p.numel(), dtype=torch.float64)
        coef[torch.arange(k), top] = p[top].sqrt()
        if probes:
            tail = torch.ones_like(p, dtype=torch.bool)
            tail[top] = False
            gen = torch.Generator().manual_seed(seed * 100003 + n)
            z = torch.randn(probes, p.numel(), generator=gen, dtype=torch.float64)
            coef[k:] = (p.sqrt() * tail) * z / math.sqrt(probes)
        coef = coef.float().to(engine.layer0[n].hidden.device)

        def loss(y: torch.Tensor) -> torch.Tensor:
            logp = torch.log_softmax(engine.arch.softcap(head(y)).float(), dim=-1)
            return (coef * logp).sum()

        grads = _gate_grads(engine, n, k + probes, loss)
        total += (grads**2).sum(0)
        engine.progress(1)
    return 0.5 * delta**2 * total / engine.n_prompts


def gships_proxy(engine: FastEngine, rank: int, directions: int | None = None) -> torch.Tensor:
    """First-order estimate of each head's generalized Ships score (degrees), ``[L, H]``.

    ``directions`` (m, default: all N) right singular vectors are probed per prompt; terms of the
    perturbation formula that need the others are dropped (exact first order when m = N).
    """
    L, H = engine.arch.num_layers, engine.arch.num_heads
    base = engine.base_hidden
    N = base.shape[0]
    u, s, vh = torch.linalg.svd(base, full_matrices=False)
    K = min(N, base.shape[1])
    m = K if directions is None else max(rank, min(int(directions), K))
    dirs_all = vh[:m].to(engine.layer0[0].hidden.dtype)  # [m, d]
    per_prompt = []
    for n in range(engine.n_prompts):
        dirs = dirs_all.to(engine.layer0[n].hidden.device)
        per_prompt.append(_gate_grads(engine, n, m, lambda y: (y * dirs).sum()))  # [m, L, H]
        engine.progress(1)
    dmv = (engine.eps - 1.0) * torch.stack(per_prompt)  # [N, m, L, H]: columns of dM V_m per head
    dmv = dmv.permute(2, 3, 0, 1).reshape(L * H, N, m)
    proj = u.T @ dmv  # [LH, N, m]: u_j^T dM v_k
    j = torch.arange(rank, K)
    sig_i, sig_j = s[:rank].view(1, rank), s[j].view(-1, 1)  # [1, r], [N-r, 1]
    a = proj[:, j, :rank]  # u_j^T dM v_i, [LH, N-r, r]
    b = torch.zeros_like(a)
    inside = j < m
    if inside.any():
        b[:, inside, :] = proj[:, :rank, j[inside]].transpose(1, 2)  # u_i^T dM v_j
    gap = (sig_i**2 - sig_j**2).clamp_min(1e-12 * float(s[0]) ** 2)
    coef = (sig_i * a + sig_j * b) / gap  # rotation of u_i towards u_j
    sv = torch.linalg.svdvals(coef)
    angles = torch.arctan(sv).sum(-1) * 180.0 / math.pi
    return angles.reshape(L, H)
