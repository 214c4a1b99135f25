"""SparseGPT (Frantar & Alistarh 2023): prune column by column with OBS error compensation.

Unlike magnitude and Wanda it also updates the remaining weights, so its pruned weights differ
from the dense ones.
"""

from __future__ import annotations

import logging
from typing import Any

import torch

from ...calibration import HessianAccumulator
from ...errors import HsrError
from ..masks import Sparsity, pruned_per_row
from . import register

log = logging.getLogger(__name__)


@register("sparsegpt", statistics=HessianAccumulator)
def prune_sparsegpt(weight: torch.Tensor, stats: HessianAccumulator, name: str, config: Any) -> tuple[torch.Tensor, torch.Tensor]:
    return sparsegpt_prune(weight, stats.h[name], config.sparsity, block_size=config.block_size, percdamp=config.percdamp)


class SingularHessianError(HsrError, ValueError):
    """The calibration Hessian stays singular even with heavy dampening."""


def inverse_hessian_factor(H: torch.Tensor, percdamp: float, retries: int = 6) -> torch.Tensor:
    """Upper Cholesky factor of (H + damp*I)^-1, with damp = percdamp * mean(diag H).

    A Hessian from few or degenerate calibration tokens can be singular to working precision; the
    dampening is then raised tenfold per retry (up to ``retries`` times, logged) before giving up
    with a clear error instead of a linear-algebra traceback.
    """
    cols = H.shape[0]
    eye = torch.eye(cols, dtype=H.dtype, device=H.device)
    mean_diag = torch.mean(torch.diag(H))
    factor = percdamp
    for attempt in range(retries + 1):
        try:
            L = torch.linalg.cholesky(H + factor * mean_diag * eye)
            return torch.linalg.cholesky(torch.cholesky_inverse(L), upper=True)
        except RuntimeError:  # torch.linalg.LinAlgError subclasses RuntimeError
            if attempt == retries:
                break
            log.warning("SparseGPT: Hessian not positive definite with dampening %.3g; retrying with %.3g", factor, factor * 10)
            factor *= 10
    raise SingularHessianError(
        f"SparseGPT: the calibration Hessian ({cols} x {cols}) stays singular even with dampening {factor:g}; "
        "use more or longer calibration samples, or prune with wanda."
    )


def sparsegpt_prune(
    weight: torch.Tensor,
    hessian: torch.Tensor,
    sparsity: Sparsity,
    block_size: int = 128,
    percdamp: float = 0.01,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT (Frantar & Alistarh 2023): prune column by column with OBS error compensation.

    Masks are chosen adaptively per block of columns by w^2 / [H^-1]_jj^2. For unstructured
    sparsity the selection is over the whole block (all rows), as in the paper, so a layer ends
    with exactly ``floor(ratio * numel)`` pruned weights but rows may differ (a per-row quota per
    block forces pruning high-activation columns and costs accuracy). N:M groups are chosen
    within each group of M columns, so N:M masks are exact per group.
    """
    rows, cols = weight.shape
    if sparsity.is_nm and block_size % sparsity.m:
        block_size = sparsity.m * max(1, block_size // sparsity.m)
    W = weight.detach().double().clone()
    H = hessian.detach().double().clone()
    dead = torch.diag(H) == 0
    H[dead, dead] = 1.0
    W[:, dead] = 0.0
    Hinv = inverse_hessian_factor(H, percdamp)

    mask = torch.zeros(rows, cols, dtype=torch.bool, device=W.device)
    for i1 in range(0, cols, block_size):
        i2 = min(i1 + block_size, cols)
        count = i2 - i1
        W1 = W[:, i1:i2].clone()
        Q1 = torch.zeros_like(W1)
        Err1 = torch.zeros_like(W1)
        Hinv1 = Hinv[i1:i2, i1:i2]
        d = torch.diag(Hinv1)
        if sparsity.is_nm:
            mask1 = torch.zeros_like(W1, dtype=torch.bool)
        else:
            k = pruned_per_row(rows * i2, sparsity.ratio) - pruned_per_row(rows * i1, sparsity.ratio)
            tmp = (W1**2 / (d.unsqueeze(0) ** 2)).flatten()
            flat = torch.zeros_like(tmp, dtype=torch.bool)
            if k > 0:
                flat[torch.sort(tmp, stable=True).indices[:k]] = True
            mask1 = flat.reshape(rows, count)
        for i in range(count):
            w = W1[:, i]
            if sparsity.is_nm and i % sparsity.m == 0:
                tmp = W1[:, i : i + sparsity.m] ** 2 / (d[i : i + sparsity.m].unsqueeze(0) ** 2)
                order = torch.sort(tmp, dim=1, stable=True).indices
                mask1[:, i : i + sparsity.m].scatter_(1, order[:, : sparsity.n], True)
            q = w.clone()
            q[mask1[:, i]] = 0
            Q1[:, i] = q
            err = (w - q) / d[i]
            W1[:, i:] -= err.unsqueeze(1) @ Hinv1[i, i:].unsqueeze(0)
            Err1[:, i] = err
        W[:, i1:i2] = Q1
        mask[:, i1:i2] = mask1
        W[:, i2:] -= Err1 @ Hinv[i1:i2, i2:]
    W[mask] = 0.0
    return W.to(weight.dtype), mask
