import pytest
import torch
from torch import nn

from hsr.calibration import HessianAccumulator, InputNormAccumulator
from hsr.pruning import Sparsity, is_valid_nm, sparsegpt_prune, unstructured_mask, wanda_scores
from hsr.pruning.methods import prune_by_scores


def _layer_and_inputs(seed=0, out=24, inp=64, tokens=400):
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(inp, out, bias=False)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(out, inp, generator=g))
    # correlated inputs with uneven feature scales: where activation-aware pruning matters
    mix = torch.randn(inp, inp, generator=g) * 0.3 + torch.eye(inp)
    scale = torch.logspace(-1, 1, inp)[torch.randperm(inp, generator=g)]
    x = (torch.randn(tokens, inp, generator=g) @ mix) * scale
    return layer, x


def test_wanda_scores_equal_independent_computation():
    layer, x = _layer_and_inputs()
    acc = InputNormAccumulator()
    for chunk in x.split(64):  # streamed in chunks, as hooks see them
        acc("lin", chunk)
    expected = torch.empty_like(layer.weight)
    for i in range(layer.weight.shape[0]):
        for j in range(layer.weight.shape[1]):
            expected[i, j] = layer.weight[i, j].abs() * sum(float(v) ** 2 for v in x[:, j]) ** 0.5
    got = wanda_scores(layer.weight.data, acc.norms("lin"))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)


def test_hessian_accumulator_matches_closed_form():
    _, x = _layer_and_inputs(tokens=130)
    acc = HessianAccumulator()
    for chunk in x.split(50):
        acc("lin", chunk)
    expected = 2.0 / x.shape[0] * (x.double().T @ x.double())
    torch.testing.assert_close(acc.h["lin"], expected)


def _recon_error(w_dense, w_pruned, x):
    return ((x @ w_dense.T - x @ w_pruned.T) ** 2).sum().item()


def test_sparsegpt_beats_magnitude_and_wanda_on_reconstruction():
    layer, x = _layer_and_inputs()
    w = layer.weight.data
    sp = Sparsity(ratio=0.5)
    acc_h, acc_n = HessianAccumulator(), InputNormAccumulator()
    acc_h("lin", x)
    acc_n("lin", x)
    w_mag, m_mag = prune_by_scores(w, w.abs(), sp)
    w_wanda, _ = prune_by_scores(w, wanda_scores(w, acc_n.norms("lin")), sp)
    w_sgpt, m_sgpt = sparsegpt_prune(w, acc_h.h["lin"], sp, block_size=16)
    assert m_sgpt.sum() == m_mag.sum()  # equal sparsity over the layer
    assert (m_mag.sum(1) == 32).all()
    assert (w_sgpt[m_sgpt] == 0).all()
    e_mag, e_wanda, e_sgpt = (_recon_error(w, p, x) for p in (w_mag, w_wanda, w_sgpt))
    assert e_sgpt < e_wanda < e_mag


def test_sparsegpt_nm_gives_valid_groups():
    layer, x = _layer_and_inputs(seed=3)
    acc = HessianAccumulator()
    acc("lin", x)
    w, mask = sparsegpt_prune(layer.weight.data, acc.h["lin"], Sparsity(n=2, m=4), block_size=16)
    assert is_valid_nm(mask, 2, 4)
    assert (w[mask] == 0).all() and (w[~mask] != 0).all()


def test_magnitude_masks_are_deterministic():
    layer, _ = _layer_and_inputs(seed=5)
    a = unstructured_mask(layer.weight.abs(), 0.3)
    b = unstructured_mask(layer.weight.abs().clone(), 0.3)
    assert torch.equal(a, b)


def test_sparsegpt_singular_hessian_retries_with_more_dampening_then_fails_clearly():
    from hsr.pruning.methods import SingularHessianError, inverse_hessian_factor

    # Rank-one Hessian with a negative eigen-direction after rounding: plain dampening 0.01 fails.
    v = torch.tensor([1.0, -1.0, 1e-9], dtype=torch.float64)
    H = torch.outer(v, v) - 0.015 * torch.eye(3, dtype=torch.float64)
    with pytest.raises(RuntimeError):
        torch.linalg.cholesky(H + 0.01 * torch.mean(torch.diag(H)) * torch.eye(3, dtype=torch.float64))
    U = inverse_hessian_factor(H, 0.01)  # a retry with larger dampening succeeds
    assert torch.isfinite(U).all() and torch.allclose(U, torch.triu(U))
    with pytest.raises(SingularHessianError, match="stays singular"):
        inverse_hessian_factor(-torch.eye(3, dtype=torch.float64), 0.01)


def _unbatched_sparsegpt(w, H, ratio, block_size, percdamp=0.01):
    """SparseGPT written straight from the paper, without lazy batch updates: after each column,
    its error is pushed into EVERY later column at once. Masks are picked per block of columns by
    w^2 / [U]_jj^2 over the whole block (all rows), U the upper Cholesky factor of (H + damp I)^-1."""
    W = w.double().clone()
    H = H.double()
    cols = H.shape[0]
    Hd = H + percdamp * torch.diag(H).mean() * torch.eye(cols, dtype=torch.float64)
    U = torch.linalg.cholesky(torch.linalg.inv(Hd)).mT  # inv(Hd) = U^T U, U upper
    mask = torch.zeros_like(W, dtype=torch.bool)
    for b in range(0, cols, block_size):
        e = min(b + block_size, cols)
        k = int(W.shape[0] * e * ratio + 1e-9) - int(W.shape[0] * b * ratio + 1e-9)
        score = (W[:, b:e] / torch.diag(U)[b:e]) ** 2
        flat = torch.zeros(score.numel(), dtype=torch.bool)
        flat[torch.argsort(score.flatten(), stable=True)[:k]] = True
        mask[:, b:e] = flat.reshape(score.shape)
        for j in range(b, e):
            err = torch.where(mask[:, j], W[:, j], torch.zeros_like(W[:, j])) / U[j, j]
            W[:, j:] -= torch.outer(err, U[j, j:])
            W[mask[:, j], j] = 0.0
    return W, mask


@pytest.mark.parametrize("block_size", [16, 24, 64])
def test_sparsegpt_lazy_block_updates_match_unbatched_obs(block_size):
    # The blocked implementation (updates inside a block, then one matmul for the columns after it)
    # must give the same masks and weights as pushing every column's error forward immediately.
    layer, x = _layer_and_inputs(seed=7, out=20, inp=64)
    acc = HessianAccumulator()
    acc("lin", x)
    got_w, got_mask = sparsegpt_prune(layer.weight.data, acc.h["lin"], Sparsity(ratio=0.5), block_size=block_size)
    ref_w, ref_mask = _unbatched_sparsegpt(layer.weight.data, acc.h["lin"], 0.5, block_size)
    assert torch.equal(got_mask, ref_mask)
    torch.testing.assert_close(got_w.double(), ref_w, rtol=1e-5, atol=1e-5)
