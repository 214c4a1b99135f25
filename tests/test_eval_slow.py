"""Evaluation on the real SmolLM2-135M-Instruct weights (slow: minutes on a busy CPU)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.slow


def test_evaluate_default_model(tmp_path):
    from hsr.evaluation import EvalConfig, evaluate_model
    from hsr.loading import load_model

    loaded = load_model("default")
    config = EvalConfig(limit=4, max_new_tokens=24, batch_size=4, mcq_limit=12, ppl_max_tokens=600, max_length=256)
    metrics = evaluate_model(loaded, config, tmp_path, label="dense", progress=False)
    # a real small instruct model: fluent English text, better than chance on easy questions
    assert 2 < metrics["perplexity"] < 200
    assert metrics["mcq_accuracy"]["n"] == 12 and metrics["mcq_accuracy"]["k"] >= 4
    rows = [json.loads(line) for line in (tmp_path / "generations_harmful.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["output"].split()) >= 5 for r in rows)
