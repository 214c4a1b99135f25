"""The ``pair`` head score: KL to the dense model recovered by restoring one head's dense slices in the
pruned model, harmful minus benign; its engines against a reference that literally copies the slices."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from conftest import with_nonzero_biases
from heads_pins import samples as harmful_samples, sharpened
from hsr.architecture import describe
from hsr.data import Sample, encode
from hsr.errors import ConfigError, HsrError
from hsr.heads import HeadScoreConfig, score_heads
from hsr.heads.restoring import head_slices, restored_head
from hsr.heads.scores import SCORES, get_score
from hsr.loading import LoadedModel
from hsr.realign.slices import head_bias_mask, head_weight_mask

BENIGN = ["How do I boil an egg?", "Write a short poem about the sea.", "What is the capital of France?"]


def pruned_copy(dense: LoadedModel, sparsity: float = 0.5, seed: int = 7, biases: bool = True) -> LoadedModel:
    """``dense`` with a seeded random ``sparsity`` of every decoder weight (and, with ``biases``, of the
    q/k/v bias entries) set to zero: a stand-in for a pruned checkpoint."""
    model = copy.deepcopy(dense.model)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for lin in describe(model).decoder_linears(include_mlp=True).values():
            lin.weight.mul_((torch.rand(lin.weight.shape, generator=g) >= sparsity).float())
            if biases and lin.bias is not None:
                lin.bias.mul_((torch.rand(lin.bias.shape, generator=g) >= sparsity).float())
    return LoadedModel(model=model, processor=dense.processor, arch=describe(model), source="tiny-pruned")


def _last_logps(model, inputs) -> torch.Tensor:
    with torch.no_grad():
        return torch.stack([torch.log_softmax(model(**x, use_cache=False).logits[0, -1].double(), -1) for x in inputs])


def _kl(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    return (p.exp() * (p - q)).sum(-1)


def reference_pair(dense: LoadedModel, pruned: LoadedModel, harmful, benign, copy_kv=True, copy_bias=True) -> torch.Tensor:
    """``[L, H]`` pair scores from first principles: per head, a deep copy of the pruned model gets the dense
    q rows of the head, the k/v rows of its KV group, the o_proj columns of the head and the biases of
    those rows; one full forward per prompt, float64 log-softmax of the model's own logits."""
    cfg = pruned.model.config.get_text_config()
    H, K = cfg.num_attention_heads, cfg.num_key_value_heads
    dh = getattr(cfg, "head_dim", None) or cfg.hidden_size // H
    inputs = [encode(pruned.processor, s, include_response=False).inputs for s in [*harmful, *benign]]
    d, p = _last_logps(dense.model, inputs), _last_logps(pruned.model, inputs)
    before, n = _kl(d, p), len(harmful)
    out = torch.zeros(cfg.num_hidden_layers, H, dtype=torch.float64)
    for l in range(cfg.num_hidden_layers):
        for h in range(H):
            model = copy.deepcopy(pruned.model)
            src, dst = dense.arch.layers[l].self_attn, describe(model).layers[l].self_attn
            g = h // (H // K)  # the KV group of query head h
            q, kv = slice(h * dh, (h + 1) * dh), slice(g * dh, (g + 1) * dh)
            with torch.no_grad():
                names = [("q_proj", q)] + ([("k_proj", kv), ("v_proj", kv)] if copy_kv else [])
                for name, rows in names:
                    getattr(dst, name).weight[rows] = getattr(src, name).weight[rows]
                    if copy_bias and getattr(dst, name).bias is not None:
                        getattr(dst, name).bias[rows] = getattr(src, name).bias[rows]
                dst.o_proj.weight[:, q] = src.o_proj.weight[:, q]
            gain = before - _kl(d, _last_logps(model, inputs))
            out[l, h] = gain[:n].mean() - gain[n:].mean()
    return out


def pair_models(arch: str):
    dense = sharpened(arch)
    if arch == "qwen2":
        with_nonzero_biases(dense)
    return dense, pruned_copy(dense)


ENGINE_OPTIONS = [
    {"engine": "naive"},
    {"engine": "fast"},  # shared-prefix reuse and prompt batching on (the CPU default)
    {"engine": "fast", "prefix_reuse": False, "max_batch_tokens": 0, "batch_heads": 3},
    {"engine": "fast", "batch_heads": 1},
]


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_pair_engines_equal_a_reference_that_copies_the_slices(arch, tmp_path):
    """Llama: GQA (4 query / 2 KV heads), head_dim 32 != hidden / heads. Qwen2: q/k/v biases (nonzero,
    and pruned too, so their restoration matters)."""
    dense, pruned = pair_models(arch)
    harmful, benign = harmful_samples(tmp_path, False), [Sample(p) for p in BENIGN]
    assert pruned.arch.num_kv_heads < pruned.arch.num_heads
    reference = reference_pair(dense, pruned, harmful, benign)
    assert float(reference.abs().max()) > 1e-3 and float(reference.std()) > 1e-4  # the heads differ
    # The test can tell a wrong slice: leaving out the k/v rows (or the biases) changes the scores.
    wrong = [reference_pair(dense, pruned, harmful, benign, copy_kv=False)]
    if arch == "qwen2":
        wrong.append(reference_pair(dense, pruned, harmful, benign, copy_bias=False))
    for w in wrong:
        assert float((w - reference).abs().max()) > 1e-4
    before = {k: v.clone() for k, v in pruned.model.state_dict().items()}
    for options in ENGINE_OPTIONS:
        got = score_heads(pruned, harmful, HeadScoreConfig(score="pair", **options), progress=False, benign=benign,
                          dense=dense)
        torch.testing.assert_close(got.scores, reference, rtol=1e-5, atol=1e-6, msg=str(options))
        assert got.extras["dense_model"] == dense.source and got.extras["n_benign"] == len(benign)
    after = pruned.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # every restoration was undone


def test_restored_slices_are_the_realignment_masks_and_always_undone():
    dense, pruned = pair_models("qwen2")
    arch, geom = pruned.arch, pruned.arch.geometry
    for h in range(arch.num_heads):
        for s in head_slices(geom, h):
            lin = arch.layer_linears(1)[s.rel]
            touched = torch.zeros(lin.weight.shape, dtype=torch.bool)
            touched[s.rows, s.cols] = True
            assert torch.equal(touched, head_weight_mask(geom, s.rel, [h], tuple(lin.weight.shape)))
            bias = head_bias_mask(geom, s.rel, [h], lin.out_features)
            if bias is None:
                assert s.bias_rows is None
            else:
                b = torch.zeros(lin.out_features, dtype=torch.bool)
                b[s.bias_rows] = True
                assert torch.equal(b, bias)
    before = {k: v.clone() for k, v in pruned.model.state_dict().items()}
    q = arch.attention(1).q_proj
    with pytest.raises(RuntimeError, match="boom"):
        with restored_head(dense.arch, arch, 1, 3):
            torch.testing.assert_close(q.weight[48:64], dense.arch.attention(1).q_proj.weight[48:64])
            torch.testing.assert_close(q.bias[48:64], dense.arch.attention(1).q_proj.bias[48:64])
            raise RuntimeError("boom")
    assert all(torch.equal(before[k], v) for k, v in pruned.model.state_dict().items())


def _planted_pair(seed: int):
    """A dense tiny Llama whose head ``(1, 1)`` carries a signal that only harmful prompts hold (a trigger
    token), and its "pruned" copy: that head's q rows and o_proj columns zeroed, plus 5% random pruning
    of every decoder weight. Head (1, 1) attends uniformly in the dense model (q rows zero) and its KV
    group's values read only the trigger's embedding direction, so its output at the last position (the
    mean value over the prompt) is large only where the trigger is."""
    from hsr.testing.tiny import build_tiny_model

    model, tok = build_tiny_model("llama", seed=seed)
    dense = LoadedModel(model=model, processor=tok, arch=describe(model), source="tiny-dense")
    arch, dh, g = dense.arch, dense.arch.head_dim, torch.Generator().manual_seed(seed)
    trigger = tok.convert_tokens_to_ids("<global-img>")
    u = torch.randn(arch.hidden_size, generator=g)
    u /= u.norm()
    layer, head = 1, 1
    with torch.no_grad():
        # A residual stream of norm ~8 (random init gives ~0.16, which any head output would swamp, and
        # the final norm would then hide how large that output is).
        model.get_input_embeddings().weight.mul_(50.0)
        model.get_input_embeddings().weight[trigger] = 8.0 * u
        attn = arch.attention(layer)
        attn.q_proj.weight[head * dh : (head + 1) * dh] = 0  # uniform attention
        kv = arch.kv_head_of(head)
        attn.v_proj.weight[kv * dh : (kv + 1) * dh] = torch.randn(dh, 1, generator=g) * u[None, :]  # reads u only
        model.lm_head.weight.mul_(4.0)
    pruned = pruned_copy(dense, sparsity=0.05, seed=seed)
    with torch.no_grad():
        attn = pruned.arch.attention(layer)
        attn.q_proj.weight[head * dh : (head + 1) * dh] = 0
        attn.o_proj.weight[:, head * dh : (head + 1) * dh] = 0
    return dense, pruned, (layer, head)


@pytest.mark.parametrize("seed", [0, 1])
def test_planted_damage_is_the_top_head(seed):
    """The pruned model's damage is planted in one head, and it matters on harmful prompts (which hold the
    trigger the head carries) more than on benign ones: that head tops the pair score."""
    dense, pruned, planted = _planted_pair(seed)
    harmful = [Sample("<global-img>" * 6 + f" {p}") for p in
               ["How do I break into a car?", "Write a rude message.", "Tell me how to cheat.", "Copy a key."]]
    benign = [Sample(p) for p in BENIGN]
    got = score_heads(pruned, harmful, HeadScoreConfig(score="pair"), progress=False, benign=benign, dense=dense)
    flat = got.scores.reshape(-1)
    order = flat.argsort(descending=True)
    H = pruned.arch.num_heads
    assert (int(order[0]) // H, int(order[0]) % H) == planted, got.scores
    assert float(flat[order[0]]) > 2 * float(flat[order[1]].clamp_min(0)) + 1e-3  # by a clear margin


# ------------------------------------------------------------------------------------- refusals
def test_pair_options_and_refusals(tmp_path):
    assert "pair" in SCORES and get_score("pair").unit == "KL gain (nats)"
    assert get_score("pair").needs.models == 2
    HeadScoreConfig(score="pair").validate()
    HeadScoreConfig(score="pair", engine="naive").validate()
    for bad, match in (({"engine": "approx"}, "engine fast or naive"), ({"sahara_steps": 2}, "Sahara"),
                       ({"mode": "uniform"}, "mode and eps"), ({"eps": 0.5}, "mode and eps")):
        with pytest.raises(ConfigError, match=match):
            HeadScoreConfig(score="pair", **bad).validate()
    dense, pruned = pair_models("llama")
    harmful, benign = harmful_samples(tmp_path, False), [Sample(p) for p in BENIGN]
    with pytest.raises(ConfigError, match="needs the dense model"):
        score_heads(pruned, harmful, HeadScoreConfig(score="pair"), progress=False, benign=benign)
    with pytest.raises(ConfigError, match="needs benign prompts"):
        score_heads(pruned, harmful, HeadScoreConfig(score="pair"), progress=False, dense=dense)
    with pytest.raises(ConfigError, match="scores one model"):
        score_heads(pruned, harmful, HeadScoreConfig(score="ships"), progress=False, dense=dense)


def test_mismatched_dense_model_is_refused(tmp_path):
    from transformers import LlamaForCausalLM

    dense, pruned = pair_models("llama")
    config = copy.deepcopy(pruned.model.config)
    config.intermediate_size = 96
    other = LlamaForCausalLM(config).eval()
    wrong = LoadedModel(model=other, processor=pruned.processor, arch=describe(other), source="tiny-other")
    harmful, benign = harmful_samples(tmp_path, False), [Sample(p) for p in BENIGN]
    with pytest.raises(HsrError, match="mlp.gate_proj.weight: shape"):
        score_heads(pruned, harmful, HeadScoreConfig(score="pair"), progress=False, benign=benign, dense=wrong)


def _rows(path, stem, n):
    path.write_text("".join(json.dumps({"prompt": f"{stem} {i}?"}) + "\n" for i in range(n)))
    return str(path)


def test_cli_pair_needs_dense_and_matching_shapes(tmp_path, capsys):
    from hsr.cli import main
    from hsr.testing.tiny import save_tiny_model

    model_dir = save_tiny_model("llama", tmp_path / "model")
    data = ["--data", _rows(tmp_path / "h.jsonl", "How do I do harmful thing", 2), "--benign-data",
            _rows(tmp_path / "b.jsonl", "How do I bake bread number", 2), "--no-progress"]

    def one_error(argv, match):
        capsys.readouterr()
        assert main(argv) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and match in err, err

    one_error(["heads", "--model", str(model_dir), "--score", "pair", *data, "--out", str(tmp_path / "o1")],
              "give the dense model with --dense MODEL")
    one_error(["heads", "--model", str(model_dir), "--dense", str(model_dir), "--score", "ships", *data, "--out",
               str(tmp_path / "o2")], "--dense is only for scores of a dense/pruned pair")
    other = save_tiny_model("llama", tmp_path / "other")
    cfg = json.loads((other / "config.json").read_text())
    cfg["num_hidden_layers"] = 3
    (other / "config.json").write_text(json.dumps(cfg))
    one_error(["heads", "--model", str(model_dir), "--dense", str(other), "--score", "pair", *data, "--out",
               str(tmp_path / "o3")], "the pair must share its shapes")
    qwen = save_tiny_model("qwen2", tmp_path / "qwen")
    one_error(["heads", "--model", str(model_dir), "--dense", str(qwen), "--score", "pair", *data, "--out",
               str(tmp_path / "o4")], "must share an architecture")
    assert not any((tmp_path / f"o{i}").exists() for i in range(1, 5))


def test_cli_pair_scores_the_pruned_model_against_the_dense_one(tmp_path, capsys):
    from hsr.cli import main
    from hsr.testing.tiny import save_tiny_model

    dense_dir = save_tiny_model("llama", tmp_path / "dense")
    pruned_dir = save_tiny_model("llama", tmp_path / "pruned", seed=1)  # another model of the same shapes
    out = tmp_path / "heads"
    rc = main(["heads", "--model", str(pruned_dir), "--dense", str(dense_dir), "--score", "pair",
               "--data", _rows(tmp_path / "h.jsonl", "How do I do harmful thing", 2),
               "--benign-data", _rows(tmp_path / "b.jsonl", "How do I bake bread number", 2),
               "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    heads = json.loads((out / "heads.json").read_text())
    assert heads["score"] == "pair" and heads["dense_model"] == str(dense_dir) and heads["n_benign"] == 2
    assert "restored head by head" in capsys.readouterr().out


def test_hsr_run_scores_the_prune_stage_output_against_the_dense_model(tmp_path, capsys):
    import yaml

    from hsr.cli import main
    from hsr.testing.tiny import save_tiny_model

    model_dir = save_tiny_model("qwen2", tmp_path / "model")
    helpful = [{"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a small red box."} for i in range(4)]
    refusals = [{"prompt": f"Explain how to harm person {i}.", "response": "I cannot help with that."} for i in range(4)]

    def jsonl(name, rows):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))
        return str(tmp_path / name)

    config = {
        "model": str(model_dir), "out": str(tmp_path / "run"), "max_length": 48,
        "prune": {"method": "magnitude", "sparsity": 0.5},
        "heads": {"score": "pair", "data": jsonl("h.jsonl", refusals), "benign_data": jsonl("u.jsonl", helpful),
                  "limit": 2},
        "importance": {"utility_data": str(tmp_path / "u.jsonl"), "safety_data": str(tmp_path / "h.jsonl"),
                       "limit": 2},
        "realign": {"top_h": 2, "control": False},
        "evaluate": {"enabled": False},
    }
    (tmp_path / "run.yaml").write_text(yaml.safe_dump(config))
    assert main(["run", str(tmp_path / "run.yaml"), "--no-progress"]) == 0, capsys.readouterr().err
    run = tmp_path / "run"
    heads = json.loads((run / "heads" / "heads.json").read_text())
    assert heads["score"] == "pair" and heads["n_benign"] == 2
    assert heads["dense_model"] == str(model_dir) and heads["model"].startswith(f"pruned {run / 'pruned'} vs dense")
    assert any(abs(r["score"]) > 0 for r in heads["heads"])
    assert (run / "realigned" / "summary.json").is_file()


def test_checkpoints_resume_and_are_keyed_by_the_dense_model_too(tmp_path):
    dense, pruned = pair_models("llama")
    harmful, benign = harmful_samples(tmp_path, False), [Sample(p) for p in BENIGN]
    config = HeadScoreConfig(score="pair")
    run = lambda d, ckpt: score_heads(pruned, harmful, config, checkpoint_dir=ckpt, progress=False,  # noqa: E731
                                      benign=benign, dense=d).scores
    first = run(dense, tmp_path / "ckpt")
    assert list((tmp_path / "ckpt").glob("*-layer*.safetensors"))
    assert torch.equal(run(dense, tmp_path / "ckpt"), first)  # resumed from the saved units
    other = copy.deepcopy(dense)
    other.model = copy.deepcopy(dense.model)
    other.arch = describe(other.model)
    with torch.no_grad():
        other.arch.attention(0).o_proj.weight.mul_(1.5)
    fresh = run(other, None)
    assert not torch.allclose(fresh, first)
    assert torch.equal(run(other, tmp_path / "ckpt"), fresh)  # another dense model: not served the old units
