"""The Taylor restore score against a finite difference."""

import pytest
import torch

from hsr.data import Sample, encode
from hsr.realign import head_weight_mask
from hsr.realign.taylor import taylor_scores

from conftest import tiny_loaded

SAFETY = [
    Sample(prompt=f"Explain how to {t}.", response="I can't help with that request.", image=None, meta={})
    for t in ("steal a car", "build a weapon", "hurt someone")
]


def _loss(model, processor, samples):
    """Mean over samples of each one's mean response-token NLL, written out independently of hsr's."""
    total = 0.0
    with torch.no_grad():
        for s in samples:
            enc = encode(processor, s, include_response=True)
            logits = model(**enc.inputs, use_cache=False).logits.double()
            ids, target = enc.inputs["input_ids"], enc.response_mask[:, 1:]
            nll = -torch.log_softmax(logits[:, :-1], dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
            total += float(nll[target].mean())
    return total / len(samples)


def _float64_pair():
    """A dense tiny Qwen2 and a copy with half of layer 0's q_proj and o_proj zeroed (seeded), in float64."""
    dense, pruned = tiny_loaded("qwen2"), tiny_loaded("qwen2")
    dense.model.double()
    pruned.model.double()
    g = torch.Generator().manual_seed(5)
    masks = {}
    with torch.no_grad():
        for rel in ("self_attn.q_proj", "self_attn.o_proj"):
            name = pruned.arch.full_name(0, rel)
            w = pruned.model.get_submodule(name).weight
            masks[name] = torch.rand(w.shape, generator=g) < 0.5
            w[masks[name]] = 0
    return dense, pruned, masks


def test_taylor_score_matches_finite_difference():
    dense, pruned, masks = _float64_pair()
    geom = pruned.arch.geometry
    regions = {n: m & head_weight_mask(geom, n.split(".", 3)[-1], [1], tuple(m.shape)) for n, m in masks.items()}
    dw = {n: dense.model.get_submodule(n).weight for n in regions}
    flags = [p.requires_grad for p in pruned.model.parameters()]
    got = taylor_scores(pruned.model, pruned.processor, dw, regions, SAFETY)
    assert [p.requires_grad for p in pruned.model.parameters()] == flags  # put back as they were
    assert all(p.grad is None for p in pruned.model.parameters())
    assert got.samples == len(SAFETY)
    base = _loss(pruned.model, pruned.processor, SAFETY)
    assert got.loss == pytest.approx(base, rel=1e-12)

    name = next(iter(regions))
    s = got.scores[name]
    assert s.dtype == torch.float64 and s.numel() == int(regions[name].sum())
    positions = regions[name].nonzero()
    picks = sorted(set(s.abs().topk(3).indices.tolist()) | {0, s.numel() // 2, s.numel() - 1})
    w = pruned.model.get_submodule(name).weight
    # Central difference at t = ±1 of w = t * w_dense: the second-order term cancels and O(w_dense³) is left
    # (the weights are ~0.03). A tiny t would drown in rounding: the models' RMSNorms compute in float32
    # even in a float64 model.
    fd = []
    for i in picks:
        r, c = positions[i].tolist()
        value = float(dw[name][r, c].detach())
        with torch.no_grad():
            w[r, c] = value
            up = _loss(pruned.model, pruned.processor, SAFETY)
            w[r, c] = -value
            down = _loss(pruned.model, pruned.processor, SAFETY)
            w[r, c] = 0
        fd.append((up - down) / 2)  # ≈ d L / d t at t = 0 = grad · w_dense
    fd = torch.tensor(fd, dtype=torch.float64)
    predicted = -s[picks]  # delta L ≈ -score
    scale = float(predicted.abs().max())
    assert scale > 1e-6  # nonzero, so a sign error shows
    torch.testing.assert_close(fd, predicted, rtol=1e-3, atol=1e-3 * scale)
    assert (fd + predicted).abs().max() > 0.5 * scale  # a wrong-signed score (+grad · w_dense) would fail
    assert torch.argsort(fd).tolist() == torch.argsort(-s[picks]).tolist()  # same ranking

    # Restoring the best-scored weight fully lowers the loss by about its score (first order still dominates).
    best = int(s.argmax())
    r, c = positions[best].tolist()
    with torch.no_grad():
        w[r, c] = dw[name][r, c]
    drop = base - _loss(pruned.model, pruned.processor, SAFETY)
    assert drop > 0 and drop == pytest.approx(float(s[best]), rel=0.05)
