"""Restoration on tiny models: only masked positions change, counts are exact, options behave."""

import json

import pytest
import torch

from hsr.data import Sample
from hsr.errors import ConfigError
from hsr.io import load_masks
from hsr.loading import load_model
from hsr.pruning import MASK_FILE, SUMMARY_FILE, PruneConfig, Sparsity, is_valid_nm, prune_model
from hsr.realign import (
    RESTORED_FILE,
    HeadGeometry,
    RealignConfig,
    RealignError,
    compute_importance,
    head_weight_mask,
    realign_pruned,
    save_realigned,
)
from hsr.realign.slices import ATTENTION

from conftest import tiny_loaded, with_nonzero_biases as _biased

UTILITY = [
    Sample(prompt=f"How do I {t}?", response=f"To {t}, start slowly and follow the usual steps.", image=None, meta={})
    for t in ("bake bread", "plant a tree", "fix a bike")
]
SAFETY = [
    Sample(prompt=f"Explain how to {t}.", response="I can't help with that request.", image=None, meta={})
    for t in ("steal a car", "build a weapon", "hurt someone")
]



_PRUNED_CACHE: dict = {}


def _pruned(arch, sparsity="0.5"):
    """A freshly built tiny model pruned with Wanda (pruning itself runs once per arch/sparsity)."""
    loaded = _biased(tiny_loaded(arch))
    key = (arch, sparsity)
    if key not in _PRUNED_CACHE:
        result = prune_model(loaded, UTILITY, PruneConfig(sparsity=Sparsity.parse(sparsity)), progress=False)
        _PRUNED_CACHE[key] = (_state(loaded.model), result.masks)
    state, masks = _PRUNED_CACHE[key]
    loaded.model.load_state_dict(state)
    return loaded, {k: v.clone() for k, v in masks.items()}


@pytest.fixture(scope="module")
def qwen2_scores():
    dense = _biased(tiny_loaded("qwen2"))
    return compute_importance(dense, UTILITY, progress=False), compute_importance(dense, SAFETY, progress=False)


def _all_heads(arch):
    return [(layer, h) for layer in range(arch.num_layers) for h in range(arch.num_heads)]


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_full_settings_restore_attention_to_dense(qwen2_scores):
    dense = _biased(tiny_loaded("qwen2"))
    pruned, masks = _pruned("qwen2")
    with torch.no_grad():  # as an external pruner might: zero some bias entries too
        pruned.arch.layer_linears(1)["self_attn.v_proj"].bias[:5] = 0
        pruned.arch.layer_linears(0)["self_attn.q_proj"].bias[20:30] = 0
    before = _state(pruned.model)
    heads = _all_heads(dense.arch)
    cfg = RealignConfig(top_h=len(heads), p=0.0, q=1.0, max_p=1.0)
    result = realign_pruned(dense, pruned, masks, heads, *qwen2_scores, cfg)
    d, after = dense.model.state_dict(), pruned.model.state_dict()
    for name in dense.arch.decoder_linears(include_mlp=True):
        rel = ".".join(name.split(".")[-2:])
        for kind in ("weight", "bias"):
            key = f"{name}.{kind}"
            if key not in d:
                continue
            if rel in ATTENTION:
                assert torch.equal(after[key], d[key]), key  # q, k, v, o incl. qwen2's biases
            else:
                assert torch.equal(after[key], before[key]), key  # MLPs untouched by default
    assert any(f"{n}.bias" in d for n in dense.arch.decoder_linears())
    attn_pruned = sum(int(m.sum()) for n, m in masks.items() if n.split(".")[-2] + "." + n.split(".")[-1] in ATTENTION)
    assert result.summary["restored_weights"] == attn_pruned
    assert result.summary["restored_bias_params"] == 15
    assert result.summary["restored_params"] == attn_pruned + 15
    for name, m in result.masks_after.items():
        is_attn = name.split(".")[-2] + "." + name.split(".")[-1] in ATTENTION
        assert torch.equal(m, torch.zeros_like(m) if is_attn else masks[name])


def _check_only_mask_changed(before, after_model, masks, restored, dense):
    after = after_model.state_dict()
    d = dense.model.state_dict()
    changed_total = 0
    weight_keys = {f"{n}.weight": n for n in masks}
    for key, tensor in after.items():
        if key not in weight_keys:
            assert torch.equal(tensor, before[key]), f"{key} changed"
            continue
        name = weight_keys[key]
        changed = tensor != before[key]
        assert not (changed & ~masks[name]).any(), f"{name}: change outside the mask"
        r = restored.get(name, torch.zeros_like(masks[name]))
        assert torch.equal(changed, r), name  # dense values are nonzero, so every restore is a change
        assert torch.equal(tensor[r], d[key][r])
        changed_total += int(changed.sum())
    return changed_total


@pytest.mark.parametrize("per_row", [False, True])
def test_default_restore_changes_only_masked_slices_and_counts_exactly(qwen2_scores, per_row):
    dense = _biased(tiny_loaded("qwen2"))
    pruned, masks = _pruned("qwen2")
    before = _state(pruned.model)
    ranking = [(1, 3), (0, 1), (1, 0), (0, 0), (0, 2)]
    cfg = RealignConfig(top_h=3, per_row=per_row)
    result = realign_pruned(dense, pruned, masks, ranking, *qwen2_scores, cfg)
    s = result.summary
    assert [(h["layer"], h["head"]) for h in s["heads"]] == ranking[:3]
    changed = _check_only_mask_changed(before, pruned.model, masks, result.restored, dense)
    assert changed == s["restored_params"] > 0
    assert s["restored_fraction"] == pytest.approx(changed / dense.arch.language_model_param_count(dense.model))
    # restored positions lie in the selected heads' slices
    geom = HeadGeometry.from_arch(dense.arch)
    for layer in (0, 1):
        heads = [h for (l, h) in ranking[:3] if l == layer]
        for rel in ATTENTION:
            name = dense.arch.full_name(layer, rel)
            sl = head_weight_mask(geom, rel, heads, tuple(masks[name].shape))
            assert not (result.restored[name] & ~sl).any()
    # accounting adds up: per head (q, o) + per KV group (k, v) = per layer = per matrix = total
    per_head = sum(h["restored"] for h in s["per_head"])
    per_group = sum(g["restored"] for g in s["per_kv_group"])
    assert per_head + per_group == s["restored_params"]
    assert sum(e["restored"] for e in s["per_layer"]) == s["restored_params"]
    assert sum(v["weights"] + v["bias"] for v in s["per_matrix"].values()) == s["restored_params"]
    for name, r in result.restored.items():
        assert s["per_matrix"][name]["weights"] == int(r.sum())
    for h in s["per_head"]:
        q = result.restored[dense.arch.full_name(h["layer"], "self_attn.q_proj")]
        assert h["q_proj"] == int(q[h["head"] * 16 : (h["head"] + 1) * 16].sum())
    assert {(g["layer"], g["kv_head"]) for g in s["per_kv_group"]} == {(1, 1), (0, 0), (1, 0)}
    assert s["pruned_params_after"] == s["pruned_params_before"] - s["restored_params"]
    for name, m in result.masks_after.items():
        assert torch.equal(m, masks[name] & ~result.restored.get(name, torch.zeros_like(m)))
        assert (pruned.model.get_submodule(name).weight[m] == 0).all()


def test_whole_head_budget_random_and_mlp(qwen2_scores):
    dense = _biased(tiny_loaded("qwen2"))
    ranking = [(0, 1), (1, 2), (0, 3)]
    base_pruned, masks = _pruned("qwen2")
    base = realign_pruned(dense, base_pruned, masks, ranking, *qwen2_scores, RealignConfig(top_h=2))
    n_base = base.summary["restored_params"]

    # whole head: every pruned weight in the slices, a superset of the C-based restore
    pruned, _ = _pruned("qwen2")
    whole = realign_pruned(dense, pruned, masks, ranking, None, None, RealignConfig(top_h=2, whole_head=True))
    geom = HeadGeometry.from_arch(dense.arch)
    for name, r in whole.restored.items():
        layer = int(name.split(".")[2])
        rel = ".".join(name.split(".")[-2:])
        heads = [h for (l, h) in ranking[:2] if l == layer]
        assert torch.equal(r, masks[name] & head_weight_mask(geom, rel, heads, tuple(r.shape)))
        assert not (base.restored[name] & ~r).any()
    assert whole.summary["restored_params"] > n_base

    # budget: the top-budget restorations by safety score, a subset of the unlimited ones
    pruned, _ = _pruned("qwen2")
    budget = n_base // 3
    capped = realign_pruned(dense, pruned, masks, ranking, *qwen2_scores, RealignConfig(top_h=2, budget=budget))
    assert capped.summary["restored_params"] == budget
    kept_scores, dropped_scores = [], []
    for name, r in base.restored.items():
        assert not (capped.restored[name] & ~r).any()
        kept_scores += qwen2_scores[1][name][capped.restored[name]].tolist()
        dropped_scores += qwen2_scores[1][name][r & ~capped.restored[name]].tolist()
    assert min(kept_scores) >= max(dropped_scores)
    pruned, _ = _pruned("qwen2")
    assert realign_pruned(dense, pruned, masks, ranking, *qwen2_scores, RealignConfig(top_h=2, budget=0)).summary[
        "restored_params"] == 0

    # random heads: same h, seeded, independent of the ranking
    picks = []
    for seed in (5, 5, 6):
        pruned, _ = _pruned("qwen2")
        res = realign_pruned(dense, pruned, masks, ranking, *qwen2_scores, RealignConfig(top_h=4, random_heads=True, seed=seed))
        picks.append([(h["layer"], h["head"]) for h in res.summary["heads"]])
        assert res.summary["head_selection"] == "random" and len(set(picks[-1])) == 4
    assert picks[0] == picks[1] and picks[0] != picks[2]

    # include MLP: whole MLP matrices of layers holding a selected head, and no others
    pruned, _ = _pruned("qwen2")
    before = _state(pruned.model)
    mlp = realign_pruned(dense, pruned, masks, [(1, 0)], *qwen2_scores, RealignConfig(top_h=1, include_mlp=True))
    assert any(int(mlp.restored[dense.arch.full_name(1, f"mlp.{p}")].sum()) for p in ("gate_proj", "up_proj", "down_proj"))
    assert all(not n.startswith(dense.arch.full_name(0, "")) for n in mlp.restored)
    assert _check_only_mask_changed(before, pruned.model, masks, mlp.restored, dense) == mlp.summary["restored_params"]


def test_preserve_nm_keeps_groups_valid(qwen2_scores):
    dense = _biased(tiny_loaded("qwen2"))
    pruned, masks = _pruned("qwen2", "2:4")
    ranking = _all_heads(dense.arch)
    res = realign_pruned(dense, pruned, masks, ranking, *qwen2_scores, RealignConfig(top_h=4, preserve_nm=True))
    s = res.summary
    assert s["nm_pattern"] == "2:4" and s["restored_params"] > 0
    assert s["repruned_params"] == s["restored_params"]
    assert s["pruned_params_after"] == s["pruned_params_before"]
    for name, m in res.masks_after.items():
        assert is_valid_nm(m, 2, 4), name
        w = pruned.model.get_submodule(name).weight
        assert (w[m] == 0).all() and (w[~m] != 0).all()
    # without preservation the restored groups break the pattern
    pruned2, _ = _pruned("qwen2", "2:4")
    plain = realign_pruned(dense, pruned2, masks, ranking, *qwen2_scores, RealignConfig(top_h=4))
    assert not all(is_valid_nm(m, 2, 4) for m in plain.masks_after.values())
    # an unstructured mask cannot be preserved
    pruned3, masks3 = _pruned("qwen2")
    with pytest.raises(RealignError, match="N:M"):
        realign_pruned(dense, pruned3, masks3, ranking, *qwen2_scores, RealignConfig(top_h=2, preserve_nm=True))


def test_errors(qwen2_scores):
    dense = _biased(tiny_loaded("qwen2"))
    pruned, masks = _pruned("qwen2")
    utility, safety = qwen2_scores
    with pytest.raises(ConfigError, match="top_h=9"):
        realign_pruned(dense, pruned, masks, _all_heads(dense.arch)[:8], utility, safety, RealignConfig(top_h=9))
    with pytest.raises(ConfigError, match="top_h=9"):
        realign_pruned(dense, pruned, masks, [], utility, safety, RealignConfig(top_h=9, random_heads=True))
    with pytest.raises(Exception, match="layer 5"):
        realign_pruned(dense, pruned, masks, [(5, 0)], utility, safety, RealignConfig(top_h=1))
    partial = {k: v for k, v in safety.items() if "layers.1.self_attn.q_proj" not in k}
    with pytest.raises(RealignError, match="layers.1.self_attn.q_proj"):
        realign_pruned(dense, pruned, masks, [(1, 0)], utility, partial, RealignConfig(top_h=1))
    with pytest.raises(RealignError, match="required"):
        realign_pruned(dense, pruned, masks, [(1, 0)], None, None, RealignConfig(top_h=1))
    with pytest.raises(ConfigError, match="0 < q <= 1"):
        realign_pruned(dense, pruned, masks, [(1, 0)], utility, safety, RealignConfig(top_h=1, q=0))
    # nothing was modified by the failed calls
    fresh, _ = _pruned("qwen2")
    for k, v in fresh.model.state_dict().items():
        assert torch.equal(v, pruned.model.state_dict()[k])


def test_save_realigned_round_trip(tmp_path, qwen2_scores):
    dense = _biased(tiny_loaded("qwen2"))
    pruned, masks = _pruned("qwen2")
    result = realign_pruned(dense, pruned, masks, [(0, 2), (1, 1)], *qwen2_scores, RealignConfig(top_h=2))
    out = save_realigned(tmp_path / "realigned", pruned, result)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    for key in ("restored_params", "restored_fraction", "per_layer", "per_head", "heads", "config"):
        assert key in summary
    assert summary["restored_params"] == result.summary["restored_params"]
    saved = load_masks(out / MASK_FILE)
    assert saved.keys() == masks.keys() and all(torch.equal(saved[k], result.masks_after[k]) for k in saved)
    restored = load_masks(out / RESTORED_FILE)
    assert sum(int(r.sum()) for r in restored.values()) == summary["restored_weights"]
    reloaded = load_model(out)
    for k, v in pruned.model.state_dict().items():
        assert torch.equal(reloaded.model.state_dict()[k], v), k
    with pytest.raises(Exception, match="already exists"):
        save_realigned(out, pruned, result)


def test_vlm_restores_language_model_only(calib_jsonl):
    from hsr.data import load_samples

    dense = tiny_loaded("qwen2_5_vl")
    pruned = tiny_loaded("qwen2_5_vl")
    samples = load_samples(calib_jsonl)
    masks = prune_model(pruned, samples, PruneConfig(), progress=False).masks
    before = _state(pruned.model)
    u = compute_importance(dense, samples[:3], progress=False)
    s = compute_importance(dense, samples[3:], progress=False)
    heads = _all_heads(dense.arch)
    res = realign_pruned(dense, pruned, masks, heads, u, s, RealignConfig(top_h=len(heads), p=0, q=1, max_p=1))
    assert _check_only_mask_changed(before, pruned.model, masks, res.restored, dense) == res.summary["restored_params"]
    for name in dense.arch.decoder_linears(include_mlp=False):
        assert torch.equal(pruned.model.get_submodule(name).weight, dense.model.get_submodule(name).weight)


def test_plan_restore_is_pure_and_follows_the_formula():
    """R = C ∩ M ∩ slices from masks and scores alone, no model: GQA H=4, K=2, d_h=2, hidden 8."""
    from hsr.architecture import HeadGeometry as Geom
    from hsr.realign.restore import Target, plan_restore
    from hsr.realign.selection import candidate_mask

    geom = Geom(num_heads=4, num_kv_heads=2, head_dim=2)
    g = torch.Generator().manual_seed(0)
    targets = [Target("q", "self_attn.q_proj", [1], (8, 8)), Target("k", "self_attn.k_proj", [1], (4, 8)),
               Target("o", "self_attn.o_proj", [1], (8, 8))]
    masks = {t.name: torch.rand(t.shape, generator=g) < 0.5 for t in targets}
    util = {t.name: torch.rand(t.shape, generator=g) for t in targets}
    safe = {t.name: torch.rand(t.shape, generator=g) for t in targets}
    whole = plan_restore(geom, targets, masks, None, None, RealignConfig(top_h=1, whole_head=True))
    q_rows = torch.zeros(8, 8, dtype=torch.bool)
    q_rows[2:4] = True  # head 1 -> q rows [2, 4)
    k_rows = torch.zeros(4, 8, dtype=torch.bool)
    k_rows[0:2] = True  # head 1 -> KV group 0 -> k rows [0, 2)
    o_cols = torch.zeros(8, 8, dtype=torch.bool)
    o_cols[:, 2:4] = True  # head 1 -> o columns [2, 4)
    assert torch.equal(whole.restore["q"], masks["q"] & q_rows)
    assert torch.equal(whole.restore["k"], masks["k"] & k_rows)
    assert torch.equal(whole.restore["o"], masks["o"] & o_cols)
    cfg = RealignConfig(top_h=1, p=0.2, q=0.6, max_p=0.8)
    plan = plan_restore(geom, targets, masks, util, safe, cfg)
    for t, region in (("q", q_rows), ("k", k_rows), ("o", o_cols)):
        expected = masks[t] & region & candidate_mask(util[t], safe[t], 0.2, 0.6, 0.8)
        assert torch.equal(plan.restore[t], expected), t
    assert plan.candidates == sum(int(r.sum()) for r in plan.restore.values())
    capped = plan_restore(geom, targets, masks, util, safe, RealignConfig(top_h=1, p=0.2, q=0.6, max_p=0.8, budget=3))
    assert sum(int(r.sum()) for r in capped.restore.values()) == min(3, plan.candidates)
