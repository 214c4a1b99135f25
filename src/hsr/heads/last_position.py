"""The approximate engine's refinement: each candidate head ablated at the last prompt position only.

Ablating a head only where the next token is predicted is exact and nonlinear there (the earlier
positions keep their unablated states), and its error is nearly independent of the gradient
estimate's, so their geometric mean ranks heads much better than either (docs/experiments/approx-estimates.md).

All prompts run together, layer-major: the earlier positions' keys/values come from the gradient
pass (or one unablated forward of every prompt's earlier tokens, right-padded), and each prompt's
last token runs as one row per candidate head, joining at the head's layer as a copy of the
unablated row; a row attends to its own prompt's earlier positions (a per-row mask hides the
padding) with its own rotary position. A head of layer ``l`` costs one token through ``l..L-1``.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch

from ..architecture import final_norm
from ..calibration import layers_onloaded
from .approx import unembedding_rows
from .engines import FastEngine
from .rows import PrefixKV, PrefixReplay, RowBatch, pad_rows, in_mask_format, row_kwargs

#: ``{prompt: {layer: (keys, values)}}`` of each prompt's positions before its last one (batch 1).
EarlierKV = dict[int, dict[int, tuple[torch.Tensor, torch.Tensor]]]


def _pad_tokens(t: torch.Tensor, width: int) -> torch.Tensor:
    """``[1, kv_heads, P, d]`` keys/values right-padded with zeros to ``width`` positions."""
    extra = width - t.shape[-2]
    return t if not extra else torch.cat([t, t.new_zeros(*t.shape[:-2], extra, t.shape[-1])], dim=-2)


def _last_token_kwargs(engine: FastEngine, i: int, earlier: list[int], rows: int, cache: PrefixReplay,
                       dtype: torch.dtype) -> dict[str, Any]:
    """Layer ``i``'s kwargs for ``rows`` last-token rows per prompt (prompt-major): each prompt's position
    ``earlier[n]``, and a mask over the padded earlier keys that shows each row its own prompt's."""
    per = [engine.layer_kwargs(i, x) for x in engine.layer0]
    out = row_kwargs(per, earlier, [1] * len(per), rows)
    W = max(earlier)
    device = engine.layer0[0].hidden.device
    seen = torch.arange(W + 1, device=device)[None, :] < torch.as_tensor(earlier, device=device)[:, None]
    seen[:, W] = True  # the row's own token
    allowed = seen.repeat_interleave(rows, 0)[:, None, None, :]
    out["attention_mask"] = in_mask_format(allowed, per[0].get("attention_mask"), dtype)
    out["cache"] = cache
    return out


@torch.no_grad()
def last_position_hidden(engine: FastEngine, plan: dict[int, list[int]], kv: EarlierKV | None = None) -> torch.Tensor:
    """Final normed last-token states ``[N, 1 + heads, d]`` (float64): per prompt, unablated (row 0), then
    with each planned head (``{layer: [head, ...]}``, layer-major) ablated at the last position only.

    ``kv`` gives the earlier positions' keys/values from an unablated forward (the gradient pass);
    without it they are computed here (one forward of every prompt's earlier tokens)."""
    arch = engine.arch
    H = arch.num_heads
    earlier = [x.hidden.shape[1] - 1 for x in engine.layer0]
    W, N = max(earlier), engine.n_prompts
    dtype = engine.layer0[0].hidden.dtype
    keys = PrefixKV()  # every prompt's earlier keys/values, padded to W, one layer at a time
    if kv is None:  # recorded by a forward of the earlier tokens
        before = pad_rows([x.hidden[:, :P] for x, P in zip(engine.layer0, earlier)], W, 1).contiguous()
        kwargs_before = engine.suffix_layer_kwargs(RowBatch(list(range(N)), earlier, 1), keys, prefix_len=0)
    rows = torch.stack([x.hidden[0, P] for x, P in zip(engine.layer0, earlier)])[:, None, None, :]  # [N, 1, 1, d]
    for i in layers_onloaded(arch):
        if kv is None:
            before = engine.forward_layers(i, i + 1, before, kwargs_before, {})
        else:
            keys.kv[i] = tuple(torch.cat([_pad_tokens(kv[n][i][j], W) for n in range(N)]) for j in (0, 1))
        gates = {}
        if plan.get(i):
            heads = torch.as_tensor(plan[i])
            rows = torch.cat([rows, rows[:, :1].expand(-1, len(heads), -1, -1)], dim=1)
            R = rows.shape[1]
            gate = torch.ones(R, H, device=rows.device)
            gate[torch.arange(R - len(heads), R), heads] = engine.eps
            gates = {i: gate.repeat(N, 1)}
        R = rows.shape[1]
        kw = _last_token_kwargs(engine, i, earlier, R, keys.replay(R, interleave=True), dtype)
        rows = engine.forward_layers(i, i + 1, rows.reshape(N * R, 1, -1).contiguous(), lambda _i, kw=kw: kw, gates)
        rows = rows.reshape(N, R, 1, -1)
        keys.drop(i)
    return final_norm(arch)(rows[:, :, 0, :]).double()


def _kl_from_logits_change(p: torch.Tensor, dz: torch.Tensor) -> torch.Tensor:
    """``KL(p || softmax(log p + dz))`` per row of ``dz`` ``[R, K]`` over ``K`` tokens of ``p`` ``[K]``
    (float64): ``log sum_y p_y e^{dz_y} - sum_y p_y dz_y``."""
    return torch.logsumexp(p.log()[None] + dz, dim=-1) - dz @ p


def last_position_proxy(engine: FastEngine, heads: Sequence[tuple[int, int]] | None = None, mass: float = 0.9999,
                        max_tokens: int = 8192, kv: EarlierKV | None = None) -> torch.Tensor:
    """Each head's Ships score, ``[L, H]``, with the head ablated at the last position only (exact there,
    nonlinear; the earlier positions keep their unablated states); only ``heads`` (default: all), NaN
    elsewhere. The KL is taken over the tokens holding ``mass`` of the base distribution."""
    L, H = engine.arch.num_layers, engine.arch.num_heads
    plan: dict[int, list[int]] = {}
    for l, h in sorted(set(heads) if heads is not None else {(l, h) for l in range(L) for h in range(H)}):
        plan.setdefault(l, []).append(h)
    owners = [(l, h) for l in sorted(plan) for h in plan[l]]
    total = torch.zeros(len(owners), dtype=torch.float64)
    states = last_position_hidden(engine, plan, kv)
    for n in range(engine.n_prompts):
        y = states[n]
        p = engine.base_logp[n].double().exp()
        order = torch.argsort(p, descending=True)
        K = min(int((p[order].cumsum(0) < mass).sum()) + 1, max_tokens, p.numel())
        idx = order[:K]
        W, bias = unembedding_rows(engine, idx)
        z = y.to(W.device) @ W.T
        if bias is not None:
            z = z + bias
        cap = engine.arch.logit_softcap
        if cap:
            z = cap * torch.tanh(z / cap)
        dz = (z[1:] - z[:1]).cpu()
        pk = p[idx] / p[idx].sum()
        total += _kl_from_logits_change(pk, dz).clamp_min(0)
    out = torch.full((L, H), float("nan"), dtype=torch.float64)
    for (l, h), v in zip(owners, (total / engine.n_prompts).tolist()):
        out[l, h] = v
    return out


def last_position_ok(engine: FastEngine) -> bool:
    """Whether the last-position ablation can run here: the prompts' kwargs can be split into earlier
    positions and the last one exactly (see :func:`hsr.heads.rows.unsafe_reason`), and every prompt has
    an earlier position."""
    return bool(getattr(engine, "rows_ok", False)) and all(x.hidden.shape[1] > 1 for x in engine.layer0)


def refine_last_position(engine: FastEngine, proxy: torch.Tensor, candidates: int, kv: EarlierKV | None = None) -> torch.Tensor:
    """``proxy`` with its top ``candidates`` heads re-estimated: the geometric mean of their ``proxy`` and
    their last-position score (:func:`last_position_proxy`). The other heads' proxies are scaled by the
    square root of the candidates' median ratio of the two, so all estimates share one scale."""
    L, H = proxy.shape
    flat = proxy.reshape(-1).double()
    order = sorted(range(L * H), key=lambda i: (-float(flat[i]), i))[: min(candidates, L * H)]
    heads = [(i // H, i % H) for i in order]
    last = last_position_proxy(engine, heads, kv=kv).reshape(-1)
    idx = torch.as_tensor(order)
    ratio = last[idx] / flat[idx]
    ratio = ratio[torch.isfinite(ratio) & (ratio > 0)]
    scale = float(ratio.median()) if ratio.numel() else 1.0
    out = flat * math.sqrt(scale)
    out[idx] = (flat[idx].clamp_min(0) * last[idx]).sqrt()
    return out.reshape(L, H).to(proxy.dtype)
