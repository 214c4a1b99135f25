"""The README's Python API example, step for step, on a tiny model with built-in data."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import tiny_loaded

from hsr.data import load_samples
from hsr.evaluation import EvalConfig, evaluate_model
from hsr.heads import HeadScoreConfig, score_heads
from hsr.pruning import PruneConfig, Sparsity, prune_model
from hsr.realign import RealignConfig, compute_importance, realign_pruned, save_realigned


def test_readme_python_api_flow(tmp_path: Path):
    dense = tiny_loaded("qwen2")
    pruned = tiny_loaded("qwen2")
    result = prune_model(
        pruned, load_samples("builtin:utility", limit=4), PruneConfig(method="wanda", sparsity=Sparsity.parse("0.5"), max_length=128)
    )
    heads = score_heads(dense, load_samples("builtin:safety", limit=3), HeadScoreConfig(score="ships", max_length=128))
    utility = compute_importance(dense, load_samples("builtin:utility", limit=4), max_length=128)
    safety = compute_importance(dense, load_samples("builtin:safety", limit=4), max_length=128)
    realigned = realign_pruned(dense, pruned, result.masks, heads.ranking(), utility, safety, RealignConfig(top_h=2))
    assert realigned.summary["restored_params"] > 0
    out = save_realigned(tmp_path / "realigned", pruned, realigned)
    assert (out / "summary.json").is_file() and (out / "mask.safetensors").is_file()
    metrics = evaluate_model(
        pruned,
        EvalConfig(limit=2, max_new_tokens=3, batch_size=2, mcq_limit=2, ppl_max_tokens=64, max_length=128),
        tmp_path / "eval",
        label="realigned",
        progress=False,
    )
    assert metrics["asr"]["n"] == 2
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["model"] == "realigned"


def test_readme_align_api(tmp_path: Path):
    from hsr.align import AlignConfig, align_model, save_aligned

    aligned = tiny_loaded("llama")
    summary = align_model(aligned, AlignConfig(epochs=1, harmful_limit=4, benign_limit=4, response_tokens=4, train_layers=1))
    assert summary["refusal_examples"] == 4 and len(summary["epoch_losses"]) == 1
    out = save_aligned(tmp_path / "aligned", aligned, summary)
    assert (out / "summary.json").is_file() and (out / "model.safetensors").is_file()
