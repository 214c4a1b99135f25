"""First-order restore scores: which pruned weights, put back, lower the refusal loss most.

An alternative to the paper's set difference (not HSR's rule): for each pruned weight ``w`` inside the
region (pruned and inside the selected heads' slices), restoring it moves it from ``w_pruned`` to
``w_dense``, and to first order the refusal loss changes by ``delta_L ≈ grad_w L(pruned) · (w_dense -
w_pruned)`` (``= grad · w_dense``, as pruned weights are zero). The restore score is ``s = -delta_L``:
higher means restoring that weight lowers the loss more. ``L`` is the mean over refusal samples
(harmful prompt + refusal, the safety data importance uses) of each sample's mean next-token NLL of
its response tokens, on the pruned model.

Gradients are taken for the target matrices only (every other parameter is frozen while they are
computed, and every flag is put back afterwards), one backward pass per sample: the graph of one
sample is freed before the next, and the gradients are summed into float buffers.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..data import DEFAULT_MAX_LENGTH, Encoded, Sample, encode
from ..errors import ConfigError, HsrError
from ..placement import is_offloaded, model_device


class TaylorError(HsrError):
    """Taylor restore scores could not be computed."""


@dataclass
class TaylorScores:
    """Per matrix, the restore score of each region position in ``tensor[region]`` (row-major) order,
    plus the refusal loss of the pruned model and how many samples it averaged."""

    scores: dict[str, torch.Tensor]
    loss: float
    samples: int


def _float_dtype(dtype: torch.dtype) -> torch.dtype:
    """At least float32, float64 kept (so a float64 model's scores stay exact enough to check)."""
    return torch.promote_types(dtype, torch.float32)


def refusal_loss(model: nn.Module, enc: Encoded) -> torch.Tensor:
    """One sample's mean next-token NLL over its response tokens (token t predicted from t-1)."""
    device = model_device(model)
    inputs = {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in enc.inputs.items()}
    logits = model(**inputs, use_cache=False).logits
    ids = inputs["input_ids"]
    target = enc.response_mask[:, 1:].to(logits.device)
    logp = torch.log_softmax(logits[:, :-1].to(_float_dtype(logits.dtype)), dim=-1)
    nll = -logp.gather(-1, ids[:, 1:].to(logits.device).unsqueeze(-1)).squeeze(-1)
    return nll[target].mean()


@contextlib.contextmanager
def gradients_for(model: nn.Module, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Gradients for ``params`` only, in eval mode; every ``requires_grad`` flag, the training mode and
    the grads (dropped) are put back on exit, so the caller's model is left as it was."""
    saved = [(p, p.requires_grad, p.grad) for p in model.parameters()]
    was_training = model.training
    try:
        for p, _, _ in saved:
            p.requires_grad_(False)
            p.grad = None
        for p in params:
            p.requires_grad_(True)
        model.eval()
        with torch.enable_grad():
            yield
    finally:
        for p, flag, grad in saved:
            p.grad = grad
            p.requires_grad_(flag)
        model.train(was_training)


def refusal_gradients(
    model: nn.Module, weights: Mapping[str, nn.Parameter], encoded: Sequence[Encoded],
) -> tuple[dict[str, torch.Tensor], float, int]:
    """Gradient of the mean refusal loss w.r.t. each of ``weights`` (float, on the weight's device), the
    loss itself and the number of samples used (those with at least one response token to predict)."""
    usable = [e for e in encoded if int(e.response_mask[:, 1:].sum()) > 0]
    if not usable:
        raise TaylorError("Taylor scores need at least one refusal sample with two or more response tokens; "
                          "raise max_length.")
    sums = {name: torch.zeros(w.shape, dtype=_float_dtype(w.dtype), device=w.device) for name, w in weights.items()}
    total = 0.0
    with gradients_for(model, list(weights.values())):
        for enc in usable:
            loss = refusal_loss(model, enc) / len(usable)
            loss.backward()
            total += float(loss.detach())
            with torch.no_grad():
                for name, w in weights.items():
                    if w.grad is not None:
                        sums[name] += w.grad.to(sums[name].dtype)
                        w.grad = None
    return sums, total, len(usable)


def taylor_scores(
    model: nn.Module,
    processor: object,
    dense: Mapping[str, torch.Tensor],
    regions: Mapping[str, torch.Tensor],
    samples: Sequence[Sample],
    max_length: int = DEFAULT_MAX_LENGTH,
) -> TaylorScores:
    """Restore score ``-grad · (w_dense - w_pruned)`` of every region position of the pruned ``model``.

    ``dense``: the dense weight of each region's matrix (full name -> tensor); ``regions``: True where a
    weight may be restored (pruned and inside the selected heads' slices); ``samples``: refusals
    (prompt + refusal response; only response tokens count). Matrices with an empty region get an
    empty score vector and no gradient."""
    if is_offloaded(model):
        raise ConfigError("The Taylor selection back-propagates through the whole pruned model, which offloaded "
                          "weights do not allow; use selection set_difference or drop --max-memory/--offload-folder.")
    encoded = [encode(processor, s, include_response=True, max_length=max_length) for s in samples]
    live = {name: r for name, r in regions.items() if bool(r.any())}
    weights = {name: model.get_submodule(name).weight for name in live}
    for name, w in weights.items():
        if tuple(dense[name].shape) != tuple(w.shape) or tuple(live[name].shape) != tuple(w.shape):
            raise TaylorError(f"{name}: dense weight {tuple(dense[name].shape)}, region {tuple(live[name].shape)} "
                              f"and pruned weight {tuple(w.shape)} differ in shape.")
    grads, loss, used = refusal_gradients(model, weights, encoded) if weights else ({}, float("nan"), 0)
    scores: dict[str, torch.Tensor] = {}
    for name, region in regions.items():
        if name not in grads:
            scores[name] = torch.zeros(0)
            continue
        g = grads.pop(name)
        r = region.to(g.device)
        delta = dense[name].detach().to(g.device, g.dtype)[r] - weights[name].detach().to(g.dtype)[r]
        scores[name] = (-(g[r] * delta)).cpu()
        del g
    return TaylorScores(scores, loss, used)
