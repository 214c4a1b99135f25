import json

import pytest
import torch

from hsr.cli import main
from hsr.data import load_samples
from hsr.io import load_masks
from hsr.pruning import MASK_FILE, SUMMARY_FILE, PruneConfig, Sparsity, is_valid_nm, prune_model, save_pruned
from hsr.pruning.masks import pruned_per_row
from hsr.testing.tiny import VLM_ARCHS, save_tiny_model

from conftest import tiny_loaded


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("arch_name", ["llava", "qwen2_vl", "smolvlm", "qwen2"])
@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
def test_only_decoder_linears_change_and_masks_are_exact(arch_name, method, calib_jsonl):
    loaded = tiny_loaded(arch_name)
    before = _state(loaded.model)
    samples = load_samples(calib_jsonl)
    result = prune_model(loaded, samples, PruneConfig(method=method, sparsity=Sparsity(ratio=0.5)), progress=False)
    after = loaded.model.state_dict()
    weight_names = {f"{name}.weight" for name in result.masks}
    for name, tensor in after.items():
        if name not in weight_names:
            assert torch.equal(tensor, before[name]), f"{name} changed but is not a decoder linear"
    for name, mask in result.masks.items():
        w = after[f"{name}.weight"]
        assert (w[mask] == 0).all()
        if method == "sparsegpt":
            assert int(mask.sum()) == pruned_per_row(mask.numel(), 0.5)
        else:
            assert (mask.sum(1) == pruned_per_row(mask.shape[1], 0.5)).all()
            assert torch.equal(w[~mask], before[f"{name}.weight"][~mask])
    assert len(result.masks) == 7 * loaded.arch.num_layers
    if arch_name in VLM_ARCHS:
        assert loaded.arch.vision_paths


@pytest.mark.parametrize("method", ["wanda", "sparsegpt", "magnitude"])
@pytest.mark.parametrize("nm", ["2:4", "4:8"])
def test_nm_masks_are_valid(method, nm, calib_jsonl):
    loaded = tiny_loaded("llama")
    sp = Sparsity.parse(nm)
    result = prune_model(loaded, load_samples(calib_jsonl), PruneConfig(method=method, sparsity=sp), progress=False)
    assert all(is_valid_nm(m, sp.n, sp.m) for m in result.masks.values())
    assert result.summary["sparsity"] == pytest.approx(0.5)


def test_seeded_runs_give_identical_masks(calib_jsonl):
    masks = []
    for _ in range(2):
        loaded = tiny_loaded("qwen2_5_vl")
        cfg = PruneConfig(method="wanda", sparsity=Sparsity(ratio=0.3), seed=7)
        masks.append(prune_model(loaded, load_samples(calib_jsonl), cfg, progress=False).masks)
    assert masks[0].keys() == masks[1].keys()
    assert all(torch.equal(masks[0][k], masks[1][k]) for k in masks[0])


@pytest.mark.parametrize("arch", ["llama", "qwen2_sliding", "gemma3"])
def test_pruning_is_sequential(arch, calib_jsonl):
    """Layer 1's Wanda mask comes from inputs produced by the already-pruned layer 0 (a whole-model
    reference: also for models whose layers have different attention types)."""
    from hsr.calibration import InputNormAccumulator, linear_input_hooks
    from hsr.data import encode
    from hsr.pruning import unstructured_mask, wanda_scores

    samples = load_samples(calib_jsonl)
    loaded = tiny_loaded(arch)
    result = prune_model(loaded, samples, PruneConfig(method="wanda", sparsity=Sparsity(ratio=0.5)), progress=False)
    # Reference: full forward of the final pruned model (layer 0 pruned), hooks on layer 1's linears.
    acc = InputNormAccumulator()
    linears = loaded.arch.layer_linears(1)
    dense = tiny_loaded(arch)
    # Layer 1 back to dense: its masks were chosen from the dense layer 1 seeing pruned layer-0 outputs.
    layer1 = {}
    for rel, lin in linears.items():
        lin.weight.data.copy_(dense.arch.layer_linears(1)[rel].weight.data)
        layer1[rel] = lin
    with torch.no_grad(), linear_input_hooks(layer1, acc):
        for s in samples:
            enc = encode(loaded.processor, s, include_response=True)
            loaded.model(**enc.inputs)
    for rel, lin in layer1.items():
        expected = unstructured_mask(wanda_scores(lin.weight.data, acc.norms(rel)), 0.5)
        assert torch.equal(expected, result.masks[loaded.arch.full_name(1, rel)]), rel


def test_save_and_reload(tmp_path, calib_jsonl):
    from transformers import AutoModelForImageTextToText

    loaded = tiny_loaded("llava")
    result = prune_model(loaded, load_samples(calib_jsonl), PruneConfig(), progress=False)
    out = save_pruned(tmp_path / "pruned", loaded, result)
    masks = load_masks(out / MASK_FILE)
    assert masks.keys() == result.masks.keys()
    assert all(torch.equal(masks[k], result.masks[k]) for k in masks)
    summary = json.loads((out / SUMMARY_FILE).read_text())
    assert summary["pruned_params"] == sum(int(m.sum()) for m in masks.values())
    reloaded = AutoModelForImageTextToText.from_pretrained(out)
    for name, tensor in loaded.model.state_dict().items():
        torch.testing.assert_close(reloaded.state_dict()[name], tensor)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_cli_prune_end_to_end_and_errors(tmp_path, calib_jsonl, capsys):
    model_dir = save_tiny_model("qwen2_vl", tmp_path / "model")
    out = tmp_path / "out"
    rc = main(["prune", "--model", str(model_dir), "--method", "wanda", "--sparsity", "2:4",
               "--data", str(calib_jsonl), "--out", str(out)])
    assert rc == 0 and (out / MASK_FILE).is_file() and (out / "config.json").is_file()
    assert "50.00%" in capsys.readouterr().out
    # out exists: refused, and nothing is modified
    stamp = (out / SUMMARY_FILE).stat().st_mtime_ns
    assert main(["prune", "--model", str(model_dir), "--data", str(calib_jsonl), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err
    assert (out / SUMMARY_FILE).stat().st_mtime_ns == stamp
    bad = [
        (["--model", str(tmp_path / "nope")], "not found"),
        (["--model", str(model_dir), "--sparsity", "1.5"], "Sparsity ratio"),
        (["--model", str(model_dir), "--data", str(tmp_path / "missing.jsonl")], "Data file not found"),
    ]
    for extra, msg in bad:
        rc = main(["prune", "--data", str(calib_jsonl), *extra, "--out", str(tmp_path / "o2")])
        assert rc == 2
        assert msg in capsys.readouterr().err
        assert not (tmp_path / "o2").exists()
