"""Realigning any pruned checkpoint: masks from mask.safetensors or inferred from the weights."""

import logging

import pytest
import torch
from torch import nn

from hsr.data import Sample
from hsr.loading import load_model
from hsr.pruning import MASK_FILE, PruneConfig, prune_model, save_pruned
from hsr.io import save_masks
from hsr.realign import (
    ModelMismatchError,
    RealignConfig,
    check_compatible,
    infer_masks,
    load_pruned_masks,
    realign_pruned,
)

from conftest import tiny_loaded, with_nonzero_biases as _biased

SAMPLES = [
    Sample(prompt=f"Question {i}?", response=f"Answer number {i} is here.", image=None, meta={}) for i in range(3)
]



@pytest.fixture(scope="module")
def pruned_dirs(tmp_path_factory):
    """An hsr prune output dir (with mask) and a plain save_pretrained checkpoint (no mask)."""
    root = tmp_path_factory.mktemp("pruned")
    loaded = _biased(tiny_loaded("qwen2"))
    result = prune_model(loaded, SAMPLES, PruneConfig(), progress=False)
    hsr_dir = save_pruned(root / "hsr", loaded, result)
    plain = root / "plain"
    loaded.model.save_pretrained(plain, safe_serialization=True)
    loaded.processor.save_pretrained(plain)
    return hsr_dir, plain, result.masks


def _same(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_masks_inferred_from_plain_checkpoint(pruned_dirs):
    hsr_dir, plain, masks = pruned_dirs
    assert not (plain / MASK_FILE).exists()
    dense = _biased(tiny_loaded("qwen2"))
    pruned = load_model(plain)
    assert _same(load_pruned_masks(plain, dense.model, pruned.model), masks)
    assert _same(infer_masks(dense.model, pruned.model), masks)
    assert _same(load_pruned_masks(hsr_dir, dense.model, load_model(hsr_dir).model), masks)


def test_inconsistent_mask_file_falls_back_to_weights(pruned_dirs, tmp_path, caplog):
    _, plain, masks = pruned_dirs
    bad = {k: ~v for k, v in masks.items()}  # marks kept (nonzero) weights as pruned
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(plain, copy)
    save_masks(bad, copy / MASK_FILE)
    dense = _biased(tiny_loaded("qwen2"))
    with caplog.at_level(logging.WARNING):
        got = load_pruned_masks(copy, dense.model, load_model(copy).model)
    assert _same(got, masks)
    assert "does not match" in caplog.text


def test_realign_from_plain_checkpoint_matches_mask_file(pruned_dirs):
    hsr_dir, plain, _ = pruned_dirs
    dense = _biased(tiny_loaded("qwen2"))
    utility = {k: torch.rand(v.shape, generator=torch.Generator().manual_seed(1)) for k, v in
               ((n, m.weight) for n, m in dense.arch.decoder_linears().items())}
    safety = {k: torch.rand_like(v) for k, v in utility.items()}
    ranking = [(1, 2), (0, 0)]
    results = []
    for src, masks in ((plain, None), (hsr_dir, "file")):
        pruned = load_model(src)
        m = load_pruned_masks(src, dense.model, pruned.model) if masks else None
        results.append(realign_pruned(dense, pruned, m, ranking, utility, safety, RealignConfig(top_h=2)))
    assert results[0].summary["mask_source"] == "inferred"
    assert _same(results[0].restored, results[1].restored) and results[0].summary["restored_params"] > 0
    # the inputs on disk were never touched
    reloaded = load_model(plain)
    fresh = load_model(hsr_dir)
    for k, v in reloaded.model.state_dict().items():
        assert torch.equal(v, fresh.model.state_dict()[k])


def test_zeroed_biases_follow_their_rows(pruned_dirs):
    _, plain, _ = pruned_dirs
    dense = _biased(tiny_loaded("qwen2"))
    pruned = load_model(plain)
    q = pruned.model.get_submodule("model.layers.0.self_attn.q_proj")
    k = pruned.model.get_submodule("model.layers.0.self_attn.k_proj")
    with torch.no_grad():
        q.bias[16:32] = 0  # head 1's rows
        k.bias[0:16] = 0  # KV group 0 (heads 0 and 1)
        q.bias[48:64] = 0  # head 3: not selected, must stay zero
    heads = [(0, 1)]
    res = realign_pruned(dense, pruned, None, heads, None, None, RealignConfig(top_h=1, whole_head=True))
    d = dense.model.get_submodule("model.layers.0.self_attn.q_proj").bias
    assert torch.equal(q.bias[16:32], d[16:32]) and (q.bias[48:64] == 0).all()
    assert torch.equal(k.bias[0:16], dense.model.get_submodule("model.layers.0.self_attn.k_proj").bias[0:16])
    assert res.summary["restored_bias_params"] == 32
    head = res.summary["per_head"][0]
    group = res.summary["per_kv_group"][0]
    assert head["q_proj"] == int(res.restored["model.layers.0.self_attn.q_proj"][16:32].sum()) + 16
    assert group["heads"] == [1] and group["k_proj"] == int(res.restored["model.layers.0.self_attn.k_proj"][0:16].sum()) + 16
    assert head["restored"] + group["restored"] == res.summary["restored_params"]


def test_mismatched_architectures_and_shapes_error_clearly():
    dense = _biased(tiny_loaded("qwen2"))
    with pytest.raises(ModelMismatchError, match="Qwen2ForCausalLM.*LlamaForCausalLM"):
        check_compatible(dense.model, tiny_loaded("llama").model)
    other = tiny_loaded("qwen2")
    other.model.model.layers[1].mlp.up_proj = nn.Linear(64, 96, bias=False)
    with pytest.raises(ModelMismatchError, match=r"model\.layers\.1\.mlp\.up_proj\.weight.*\(128, 64\).*\(96, 64\)"):
        load_pruned_masks(None, dense.model, other.model)
    with pytest.raises(ModelMismatchError, match="up_proj"):
        realign_pruned(dense, other, None, [(0, 0)], None, None, RealignConfig(top_h=1, whole_head=True))
    nobias = tiny_loaded("qwen2")
    nobias.model.model.layers[0].self_attn.q_proj.bias = None
    with pytest.raises(ModelMismatchError, match=r"layers\.0\.self_attn\.q_proj\.bias"):
        check_compatible(dense.model, nobias.model)
