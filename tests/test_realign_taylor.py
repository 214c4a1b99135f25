"""The Taylor restore selection: its score against a finite difference, the budget and region it keeps,
and ``hsr realign --selection taylor`` end to end."""

import json

import pytest
import torch

from hsr.cli import main
from hsr.data import Sample, encode
from hsr.errors import ConfigError
from hsr.pruning import SUMMARY_FILE, PruneConfig, Sparsity, is_valid_nm, prune_model
from hsr.realign import (
    RealignConfig,
    RealignError,
    compute_importance,
    head_weight_mask,
    realign_pruned,
    taylor_regions,
    taylor_scores,
)
from hsr.realign.restore import restore_targets
from hsr.realign.slices import ATTENTION
from hsr.testing.tiny import save_tiny_model

from conftest import tiny_loaded

UTILITY = [
    Sample(prompt=f"How do I {t}?", response=f"To {t}, start slowly and follow the usual steps.", image=None, meta={})
    for t in ("bake bread", "plant a tree", "fix a bike")
]
SAFETY = [
    Sample(prompt=f"Explain how to {t}.", response="I can't help with that request.", image=None, meta={})
    for t in ("steal a car", "build a weapon", "hurt someone")
]
HEADS = [(0, 1), (1, 2), (0, 3)]


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


def _pruned_qwen2(sparsity="0.5"):
    loaded = tiny_loaded("qwen2")
    masks = prune_model(loaded, UTILITY, PruneConfig(sparsity=Sparsity.parse(sparsity)), progress=False).masks
    return loaded, masks


@pytest.fixture(scope="module")
def scores():
    dense = tiny_loaded("qwen2")
    return compute_importance(dense, UTILITY, progress=False), compute_importance(dense, SAFETY, progress=False)


def _realign(scores, config, refusals=SAFETY, sparsity="0.5"):
    dense = tiny_loaded("qwen2")
    pruned, masks = _pruned_qwen2(sparsity)
    before = {k: v.clone() for k, v in pruned.model.state_dict().items()}
    result = realign_pruned(dense, pruned, {k: v.clone() for k, v in masks.items()}, HEADS, *scores, config,
                            refusals=refusals)
    return dense, pruned, masks, before, result


def test_taylor_restores_the_set_difference_count_inside_the_region(scores):
    *_, default = _realign(scores, RealignConfig(top_h=3))
    dense, pruned, masks, before, result = _realign(scores, RealignConfig(top_h=3, selection="taylor"))
    k = default.summary["restored_weights"]
    assert default.summary["selection"] == "set_difference" and "taylor" not in default.summary
    s = result.summary
    assert s["selection"] == "taylor" and s["taylor"]["k"] == k and s["taylor"]["k_from"] == "set_difference"
    assert s["restored_weights"] == k > 0 and s["candidates_in_slices"] == default.summary["candidates_in_slices"]
    geom = pruned.arch.geometry
    targets = restore_targets(pruned.arch, HEADS[:3], include_mlp=False)
    regions = taylor_regions(geom, targets, masks)
    assert s["taylor"]["region_params"] == sum(int(r.sum()) for r in regions.values()) > k
    total, overlap = 0, 0
    after = pruned.model.state_dict()
    for t in targets:
        r = result.restored[t.name]
        slices = head_weight_mask(geom, t.rel, t.heads, t.shape)
        assert not (r & ~(masks[t.name] & slices)).any()  # only pruned weights inside the heads' slices
        w = after[f"{t.name}.weight"]
        assert torch.equal(w[r], dense.model.get_submodule(t.name).weight[r])
        assert torch.equal(w[~r], before[f"{t.name}.weight"][~r])
        total += int(r.sum())
        overlap += int((r & default.restored[t.name]).sum())
    assert total == k and overlap == s["taylor"]["overlap_with_set_difference"]

    # The chosen ones are the top k by Taylor score over the whole region.
    fresh, _ = _pruned_qwen2()
    dw = {n: dense.model.get_submodule(n).weight for n in regions}
    ts = taylor_scores(fresh.model, fresh.processor, dw, regions, SAFETY)
    chosen = torch.cat([result.restored[n][regions[n]] for n in regions])
    flat = torch.cat([ts.scores[n] for n in regions])
    assert float(flat[chosen].min()) >= float(flat[~chosen].max())
    assert s["taylor"]["predicted_loss_drop"] == pytest.approx(float(flat[chosen].sum()), rel=1e-5)


def test_taylor_budget_nm_and_errors(scores):
    *_, result = _realign(scores, RealignConfig(top_h=3, selection="taylor", budget=7))
    assert result.summary["restored_weights"] == 7 and result.summary["taylor"]["k_from"] == "budget"

    _, pruned, _, _, nm = _realign(scores, RealignConfig(top_h=3, selection="taylor", preserve_nm=True), sparsity="2:4")
    assert nm.summary["nm_pattern"] == "2:4" and nm.summary["restored_weights"] == nm.summary["repruned_params"] > 0
    for name in (pruned.arch.full_name(layer, rel) for layer in range(2) for rel in ATTENTION):
        assert is_valid_nm(nm.masks_after[name], 2, 4)

    with pytest.raises(ConfigError, match="whole_head"):
        RealignConfig(selection="taylor", whole_head=True).validate()
    with pytest.raises(ConfigError, match="selection"):
        RealignConfig(selection="gradient").validate()
    with pytest.raises(RealignError, match="refusal samples"):
        _realign(scores, RealignConfig(top_h=3, selection="taylor"), refusals=None)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_cli_realign_selection_taylor(tmp_path, capsys):
    dense = save_tiny_model("qwen2", tmp_path / "dense")
    utility = _jsonl(tmp_path / "u.jsonl", [{"prompt": s.prompt, "response": s.response} for s in UTILITY])
    safety = _jsonl(tmp_path / "s.jsonl", [{"prompt": s.prompt, "response": s.response} for s in SAFETY])
    pruned = tmp_path / "pruned"
    assert main(["prune", "--model", str(dense), "--data", str(utility), "--out", str(pruned)]) == 0
    heads = tmp_path / "heads.json"
    rows = [{"layer": l, "head": h, "score": float(8 - 4 * l - h), "rank": 4 * l + h + 1} for l in range(2) for h in range(4)]
    heads.write_text(json.dumps({"score": "ships", "num_layers": 2, "num_heads": 4, "heads": rows}))
    common = ["realign", "--dense", str(dense), "--pruned", str(pruned), "--heads", str(heads),
              "--utility-data", str(utility), "--safety-data", str(safety), "--top-h", "3"]
    assert main([*common, "--out", str(tmp_path / "default")]) == 0
    capsys.readouterr()
    assert main([*common, "--selection", "taylor", "--out", str(tmp_path / "taylor")]) == 0
    assert "by Taylor score" in capsys.readouterr().out
    want = json.loads((tmp_path / "default" / SUMMARY_FILE).read_text())
    got = json.loads((tmp_path / "taylor" / SUMMARY_FILE).read_text())
    assert got["selection"] == "taylor" and got["config"]["selection"] == "taylor"
    assert got["restored_weights"] == want["restored_weights"] == got["taylor"]["k"] > 0
    assert got["inputs"]["refusals"] == str(safety) and got["taylor"]["samples"] == len(SAFETY)
    assert want["selection"] == "set_difference" and "refusals" not in want["inputs"]
    with pytest.raises(SystemExit):
        main([*common, "--selection", "nope", "--out", str(tmp_path / "x")])
    assert "invalid choice: 'nope'" in capsys.readouterr().err


def test_run_fingerprint_gets_the_selection_only_when_taylor(tmp_path, monkeypatch):
    from run_settings_capture import capture

    got = capture(tmp_path, ["realign.selection=taylor", "evaluate.enabled=false"], monkeypatch)
    realign = [s for s in got if s["name"] in ("realigned", "control")]
    assert [s["settings"]["selection"] for s in realign] == ["taylor", "taylor"]


def test_run_pipeline_realigns_by_taylor_score(tmp_path):
    from run_settings_capture import base_overrides

    from hsr.pipeline.config import load_run_config
    from hsr.pipeline.run import run_pipeline

    sets = base_overrides(tmp_path) + ["realign.selection=taylor", "evaluate.enabled=false", "prune.method=magnitude"]
    run_pipeline(load_run_config(None, sets), progress=False, echo=lambda _m: None)
    for name in ("realigned", "control"):
        s = json.loads((tmp_path / "run" / name / SUMMARY_FILE).read_text())
        assert s["selection"] == "taylor" and s["restored_weights"] == s["taylor"]["set_difference_restored"] > 0
        assert s["taylor"]["samples"] == 4  # importance.limit refusals from importance.safety_data
