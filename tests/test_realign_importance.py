"""Importance scores: response tokens only, layer-by-layer Wanda equals a full-forward reference; SNIP too."""

import pytest
import torch

from hsr.data import DataError, Sample, encode, load_samples
from hsr.errors import ConfigError
from hsr.realign import compute_importance, load_importance, save_importance
from hsr.realign.importance import ImportanceError, response_nll

from conftest import tiny_loaded

SAMPLES = [
    Sample(prompt="How do I bake bread?", response="Mix flour, water and yeast, then bake it.", image=None, meta={}),
    Sample(prompt="Name a colour.", response="Blue.", image=None, meta={}),
]


def _reference_wanda(loaded, samples):
    """|W| * ||X||, X = inputs of each linear at response tokens, from one plain full forward per sample."""
    linears = loaded.arch.decoder_linears(include_mlp=True)
    sq = {n: torch.zeros(lin.in_features) for n, lin in linears.items()}
    current = {}
    handles = [
        lin.register_forward_pre_hook(
            lambda mod, args, n=n: sq.__setitem__(n, sq[n] + (args[0][0][current["mask"]].float() ** 2).sum(0))
        )
        for n, lin in linears.items()
    ]
    try:
        with torch.no_grad():
            for s in samples:
                enc = encode(loaded.processor, s, include_response=True)
                current["mask"] = enc.response_mask[0]
                loaded.model(**enc.inputs)
    finally:
        for h in handles:
            h.remove()
    return {n: lin.weight.abs() * sq[n].sqrt().unsqueeze(0) for n, lin in linears.items()}


@pytest.mark.parametrize("arch", ["qwen2", "llama", "qwen2_sliding", "gemma3"])
def test_wanda_matches_full_forward_reference(arch):
    loaded = tiny_loaded(arch)
    scores = compute_importance(loaded, SAMPLES, progress=False)
    ref = _reference_wanda(loaded, SAMPLES)
    assert scores.keys() == ref.keys() == loaded.arch.decoder_linears().keys()
    for name, s in scores.items():
        assert s.dtype == torch.float32 and s.device.type == "cpu"
        torch.testing.assert_close(s, ref[name], rtol=1e-4, atol=1e-6)
    if arch == "gemma3":
        return  # its layer 0 sees only a 4-token window: the prompt cannot reach the response there
    # prompt tokens do not count: a different prompt with the same response changes layer-0 inputs
    # only through attention, so the q_proj input norms of layer 0 (pre-attention) are unchanged
    other = [Sample(prompt="Completely different words here!", response=s.response, image=None, meta={}) for s in SAMPLES]
    moved = compute_importance(loaded, other, progress=False)
    q0 = loaded.arch.full_name(0, "self_attn.q_proj")
    torch.testing.assert_close(moved[q0], scores[q0], rtol=1e-5, atol=1e-6)
    assert not torch.allclose(moved[loaded.arch.full_name(0, "self_attn.o_proj")], scores[loaded.arch.full_name(0, "self_attn.o_proj")])


def test_response_nll_equals_transformers_label_loss():
    loaded = tiny_loaded("qwen2")
    enc = encode(loaded.processor, SAMPLES[0], include_response=True)
    labels = enc.inputs["input_ids"].masked_fill(~enc.response_mask, -100)
    with torch.no_grad():
        out = loaded.model(**enc.inputs, labels=labels)
    torch.testing.assert_close(response_nll(out.logits, enc.inputs["input_ids"], enc.response_mask), out.loss)


def test_snip_matches_autograd_reference_and_cleans_up():
    loaded = tiny_loaded("qwen2")
    flags = {n: p.requires_grad for n, p in loaded.model.named_parameters()}
    scores = compute_importance(loaded, SAMPLES, method="snip", progress=False)
    assert {n: p.requires_grad for n, p in loaded.model.named_parameters()} == flags
    assert all(p.grad is None for p in loaded.model.parameters())
    linears = loaded.arch.decoder_linears()
    weights = [lin.weight for lin in linears.values()]
    ref = {n: torch.zeros_like(lin.weight) for n, lin in linears.items()}
    for s in SAMPLES:
        enc = encode(loaded.processor, s, include_response=True)
        labels = enc.inputs["input_ids"].masked_fill(~enc.response_mask, -100)
        loss = loaded.model(**enc.inputs, labels=labels).loss
        grads = torch.autograd.grad(loss, weights)
        for (n, lin), g in zip(linears.items(), grads):
            ref[n] += (lin.weight.detach() * g).abs()
    for n in linears:
        torch.testing.assert_close(scores[n], ref[n], rtol=1e-4, atol=1e-7)
    assert any(bool(s.any()) for s in scores.values())


def test_vlm_importance(calib_jsonl):
    loaded = tiny_loaded("llava")
    samples = load_samples(calib_jsonl)[:2]
    for method in ("wanda", "snip"):
        scores = compute_importance(loaded, samples, method=method, progress=False)
        assert scores.keys() == loaded.arch.decoder_linears().keys()
        for name, lin in loaded.arch.decoder_linears().items():
            assert scores[name].shape == lin.weight.shape and torch.isfinite(scores[name]).all()
            assert bool(scores[name].any())
            if method == "wanda":
                # |W_ij| * ||X_j||: dividing by |W| leaves one activation norm per input column.
                w = lin.weight.detach().abs()
                ratio = torch.where(w > 0, scores[name] / w, torch.nan)
                col = torch.nanmean(ratio, dim=0, keepdim=True).expand_as(ratio)
                keep = ~torch.isnan(ratio)
                torch.testing.assert_close(ratio[keep], col[keep], rtol=1e-4, atol=1e-6)


def test_save_load_and_errors(tmp_path):
    loaded = tiny_loaded("qwen2")
    scores = compute_importance(loaded, SAMPLES[:1], progress=False)
    path = tmp_path / "u.safetensors"
    save_importance(scores, path, method="wanda")
    back = load_importance(path)
    assert back.keys() == scores.keys() and all(torch.equal(back[k], scores[k]) for k in back)
    with pytest.raises(ImportanceError, match="not found"):
        load_importance(tmp_path / "missing.safetensors")
    (tmp_path / "bad.safetensors").write_text("not a tensor file")
    with pytest.raises(ImportanceError, match="bad.safetensors"):
        load_importance(tmp_path / "bad.safetensors")
    with pytest.raises(ConfigError, match="Unknown importance method"):
        compute_importance(loaded, SAMPLES, method="gradnorm")
    with pytest.raises(ConfigError, match="empty"):
        compute_importance(loaded, [])
    with pytest.raises(DataError, match="response"):
        compute_importance(loaded, [Sample(prompt="hi", response=None, image=None, meta={})])
