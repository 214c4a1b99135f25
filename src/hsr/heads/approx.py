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

* Last-position refinement (Ships, :mod:`hsr.heads.last_position`): the proxy's top candidates are re-estimated with the head ablated at
  the last position only, exactly (nonlinear) there, on the unablated keys/values of the earlier
  positions kept from the gradient pass; each candidate's estimate becomes the geometric mean of both
  (their errors are nearly independent on SmolLM2-135M: the exact top-10 move from proxy ranks <= 33
  to <= 11).

Heads are then rescored exactly in the estimate's order (see ``score_heads``).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterator

import torch

from ..architecture import final_norm, lm_head
from ..placement import is_offloaded, onloaded
from .engines import FastEngine
from .layerwise import layerwise_gate_grads
from .rows import PrefixKV, RowBatch, pad_rows, group_prompts


class _KVRecorder(PrefixKV):
    """A cache stand-in that only records each layer's keys/values (detached) and returns them unchanged."""

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any):
        self.kv[layer_idx] = (key.detach(), value.detach())
        return key, value


def _row_inputs(engine: FastEngine, batch: RowBatch, recorder: PrefixKV | None = None
                ) -> tuple[torch.Tensor, Callable[[int], dict], torch.Tensor]:
    """``batch``'s rows (whole prompts, right-padded) entering layer 0, their layer kwargs, and each row's
    last position; ``recorder`` (on the exact row path only) sees every layer's keys/values."""
    parts = [engine.layer0[n].hidden for n in batch.prompts]
    hidden = pad_rows(parts, batch.width, batch.heads) if len(parts) > 1 else parts[0].expand(batch.rows, -1, -1)
    kwargs_of = engine.suffix_layer_kwargs(batch, recorder, prefix_len=0)
    ends = torch.as_tensor(batch.lengths, device=hidden.device).repeat_interleave(batch.heads) - 1
    return hidden.contiguous(), kwargs_of, ends


def _whole_stack_grads(engine: FastEngine, hidden: torch.Tensor, kwargs_of: Callable[[int], dict], ends: torch.Tensor,
                       loss_fn: Callable[[torch.Tensor], torch.Tensor]) -> torch.Tensor:
    """``[R, L, H]`` gate gradients from one forward and backward through the whole stack."""
    arch = engine.arch
    gates = torch.ones(hidden.shape[0], arch.num_layers, arch.num_heads, device=hidden.device, requires_grad=True)
    with torch.enable_grad():
        out = engine.forward_layers(0, arch.num_layers, hidden, kwargs_of, {i: gates[:, i, :] for i in range(arch.num_layers)})
        y = final_norm(arch)(out[torch.arange(hidden.shape[0], device=out.device), ends][:, None, :])[:, 0, :]
        (grad,) = torch.autograd.grad(loss_fn(y), gates)
    return grad


def _gate_grads(
    engine: FastEngine, rows: int, loss_fn: Callable[[torch.Tensor, list[int]], torch.Tensor],
    keep_kv: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] | None = None,
) -> Iterator[tuple[list[int], torch.Tensor]]:
    """Per-row gate gradients ``[g * rows, L, H]`` for groups of prompts sharing one forward/backward.

    ``loss_fn(y, prompts)``: the summed loss of the rows (prompt-major, ``rows`` per prompt). With
    ``keep_kv`` (exact row path only), the forward's keys/values of each prompt's positions before its
    last one are kept there, ``{prompt: {layer: (k, v)}}``: at gates 1 they are the unablated ones.
    With offloaded layers the backward goes layer by layer (:mod:`hsr.heads.layerwise`), so only one
    layer's weights are held at a time instead of the whole model's.
    """
    lengths = [x.hidden.shape[1] for x in engine.layer0]
    budget = engine.max_batch_tokens if engine.rows_ok else 0
    grads_of = layerwise_gate_grads if is_offloaded(engine.loaded.model) else _whole_stack_grads
    for group in group_prompts(lengths, rows, budget):
        batch = RowBatch(group, [lengths[n] for n in group], rows)
        recorder = _KVRecorder() if keep_kv is not None and engine.rows_ok else None
        hidden, kwargs_of, ends = _row_inputs(engine, batch, recorder)
        grad = grads_of(engine, hidden, kwargs_of, ends, lambda y, group=group: loss_fn(y, group))
        if recorder is not None:
            for j, n in enumerate(group):
                keep = slice(0, batch.lengths[j] - 1)
                keep_kv[n] = {i: (k[j * rows : j * rows + 1, :, keep], v[j * rows : j * rows + 1, :, keep])
                              for i, (k, v) in recorder.kv.items()}
        yield group, grad.double().cpu()


def _fisher_coefficients(engine: FastEngine, n: int, tokens: int, probes: int, seed: int) -> torch.Tensor:
    """Rows ``[tokens + probes, V]`` whose log-prob gradients' squares sum to prompt ``n``'s Fisher diagonal."""
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
    return coef.float()


def ships_proxy(engine: FastEngine, tokens: int, probes: int, seed: int = 0) -> torch.Tensor:
    """Second-order (Fisher) estimate of each head's Ships score, ``[L, H]``."""
    delta = engine.eps - 1.0
    total = torch.zeros(engine.arch.num_layers, engine.arch.num_heads, dtype=torch.float64)
    head = lm_head(engine.loaded.model)
    rows = min(tokens, engine.base_logp.shape[1]) + probes
    coefs = [_fisher_coefficients(engine, n, tokens, probes, seed) for n in range(engine.n_prompts)]

    def loss(y: torch.Tensor, group: list[int]) -> torch.Tensor:
        coef = torch.cat([coefs[n] for n in group]).to(y.device)
        logp = torch.log_softmax(engine.arch.softcap(head(y)).float(), dim=-1)
        return (coef * logp).sum()

    for group, grads in _gate_grads(engine, rows, loss):
        total += (grads**2).sum(0)
        engine.progress(len(group))
    return 0.5 * delta**2 * total / engine.n_prompts


def unembedding_rows(engine: FastEngine, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The lm_head's rows (float64, ``[K, d]``) and bias entries (or None) of tokens ``idx``, on the execution
    device; an offloaded lm_head is materialized for the copy."""
    head = lm_head(engine.loaded.model)
    device = engine.layer0[0].hidden.device
    with onloaded(head):
        W = head.weight[idx.to(head.weight.device)].double().to(device)
        bias = getattr(head, "bias", None)
        b = None if bias is None else bias[idx.to(bias.device)].double().to(device)
    return W, b


def _likely_rows(engine: FastEngine, n: int, mass: float, max_tokens: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompt ``n``'s most likely next tokens (holding ``mass`` of the probability, at most ``max_tokens``):
    their lm_head rows ``[K, d]`` scaled by any logit softcap's slope at the base state (the Jacobian of
    the logits), and their probabilities ``[K]`` (float64)."""
    p = engine.base_logp[n].double().exp()
    order = torch.argsort(p, descending=True)
    K = min(int((p[order].cumsum(0) < mass).sum()) + 1, max_tokens, p.numel())
    idx = order[:K]
    W, _ = unembedding_rows(engine, idx)
    cap = engine.arch.logit_softcap
    if cap:
        z = W @ engine.base_hidden[n].to(W.device)
        W = W * (1 - torch.tanh(z / cap) ** 2)[:, None]
    return W, p[idx].to(W.device)


def _hidden_fisher(engine: FastEngine, n: int, mass: float = 0.9999, max_tokens: int = 8192) -> torch.Tensor:
    """Fisher information ``[d, d]`` of prompt ``n``'s next-token distribution with respect to its final
    normed last-token state: ``W^T (diag p - p p^T) W`` over the tokens holding ``mass`` of the
    probability (the rest is dropped), with ``W`` the lm_head rows scaled by any logit softcap's slope."""
    W, pk = _likely_rows(engine, n, mass, max_tokens)
    Wp = W.T @ pk
    return ((W * pk[:, None]).T @ W - torch.outer(Wp, Wp)).cpu()


def _fisher_directions(engine: FastEngine, n: int, rank: int, mass: float = 0.9999, max_tokens: int = 2048,
                       iters: int = 6, oversample: int = 6) -> torch.Tensor:
    """``[m, d]``: the top ``m = min(rank, d)`` eigenvectors of prompt ``n``'s hidden-state Fisher information
    (:func:`_hidden_fisher`), each scaled by the square root of its eigenvalue.

    For a small rank, a seeded subspace iteration on ``A = sqrt(p) (W - p^T W)`` (``A^T A`` is the Fisher
    up to the dropped tail's mass) finds them without forming the ``d x d`` matrix; otherwise it is
    formed and diagonalized (over up to 8192 tokens). The iteration keeps the ``max_tokens`` most likely
    tokens: on SmolLM2-135M, 2048 instead of 8192 leaves the estimate's ranking of the top heads as it
    is and takes a fifth of the time."""
    d = engine.base_hidden.shape[1]
    m = min(rank, d)
    q = m + oversample
    if 2 * q >= d:
        evals, evecs = torch.linalg.eigh(_hidden_fisher(engine, n, mass))
        return (evecs[:, -m:] * evals[-m:].clamp_min(0).sqrt()).T
    W, pk = _likely_rows(engine, n, mass, max_tokens)
    A = pk.sqrt()[:, None] * (W - (W.T @ pk)[None, :])
    gen = torch.Generator().manual_seed(1234 + n)
    Y = A.T @ (A @ torch.randn(d, q, generator=gen, dtype=torch.float64).to(A.device))
    for _ in range(iters):
        Y = A.T @ (A @ torch.linalg.qr(Y).Q)
    Q = torch.linalg.qr(Y).Q
    evals, small = torch.linalg.eigh(Q.T @ (A.T @ (A @ Q)))
    evecs = Q @ small
    return (evecs[:, -m:] * evals[-m:].clamp_min(0).sqrt()).T.cpu()


def ships_proxy_hidden(engine: FastEngine, rank: int,
                       keep_kv: dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]] | None = None) -> torch.Tensor:
    """Second-order (Fisher) estimate of each head's Ships score, ``[L, H]``, from ``rank`` gradient rows per
    prompt: the top eigen-directions of the Fisher information in hidden-state space (deterministic; no
    lm_head or softmax in the backward). ``keep_kv``: see :func:`_gate_grads`."""
    delta = engine.eps - 1.0
    total = torch.zeros(engine.arch.num_layers, engine.arch.num_heads, dtype=torch.float64)
    dirs = [_fisher_directions(engine, n, rank).float() for n in range(engine.n_prompts)]
    m = dirs[0].shape[0]

    def loss(y: torch.Tensor, group: list[int]) -> torch.Tensor:
        return (y * torch.cat([dirs[n] for n in group]).to(y.device, y.dtype)).sum()

    for group, grads in _gate_grads(engine, m, loss, keep_kv):
        total += (grads**2).sum(0)
        engine.progress(len(group))
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
    per_prompt: list[torch.Tensor] = [torch.empty(0)] * N

    def loss(y: torch.Tensor, group: list[int]) -> torch.Tensor:
        return (y * dirs_all.to(y.device).repeat(len(group), 1)).sum()

    for group, grads in _gate_grads(engine, m, loss):
        for j, n in enumerate(group):
            per_prompt[n] = grads[j * m : (j + 1) * m]  # [m, L, H]
        engine.progress(len(group))
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
