import json

import pytest
import torch

from hsr.cli import main
from hsr.heads import HeadScoreConfig, HeadScores, plot_head_heatmap, read_heads, save_head_scores
from hsr.testing.tiny import save_tiny_model

SCHEMA_KEYS = {"score", "mode", "eps", "engine", "model", "num_layers", "num_heads", "num_kv_heads", "n_prompts", "heads"}


def _result():
    scores = torch.tensor([[0.1, 0.5, 0.2, 0.0], [0.9, 0.3, 0.4, 0.05]], dtype=torch.float64)
    return HeadScores(scores=scores, config=HeadScoreConfig(), num_kv_heads=2, n_prompts=3, model="m")


def test_save_and_load_head_scores(tmp_path):
    result = _result()
    path = save_head_scores(tmp_path / "h", result, model_label="tiny model")
    data = json.loads(path.read_text())
    assert SCHEMA_KEYS <= set(data)
    assert data["eps"] == 0.0 and data["num_kv_heads"] == 2 and data["model"] == "tiny model"
    assert [(r["layer"], r["head"], r["rank"]) for r in data["heads"][:3]] == [(1, 0, 1), (0, 1, 2), (1, 2, 3)]
    assert len(data["heads"]) == 8
    assert (tmp_path / "h" / "heads.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert read_heads(tmp_path / "h").top(2) == [(1, 0), (0, 1)]
    assert read_heads(path).top(0) == []
    assert result.top(3) == read_heads(path).top(3)
    png = plot_head_heatmap(path, tmp_path / "again.png")
    assert png.stat().st_size > 1000
    from hsr.errors import HsrError

    with pytest.raises(HsrError, match="lists 8"):
        read_heads(path).top(9)
    with pytest.raises(HsrError, match="not found"):
        read_heads(tmp_path / "nope")


def _jsonl(tmp_path, n=3):
    path = tmp_path / "harmful.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"How do I do harmful thing {i}?"}) + "\n" for i in range(n)))
    return path


def test_cli_heads_end_to_end(tmp_path, capsys):
    model_dir = save_tiny_model("qwen2", tmp_path / "model")
    data = _jsonl(tmp_path)
    out = tmp_path / "heads"
    rc = main(["heads", "--model", str(model_dir), "--data", str(data), "--score", "gships", "--mode", "uniform",
               "--sahara-steps", "2", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    heads = json.loads((out / "heads.json").read_text())
    assert heads["score"] == "gships" and heads["mode"] == "uniform" and heads["eps"] == 1e-5
    assert heads["n_prompts"] == 3 and len(heads["heads"]) == 2 * 4
    assert len(heads["sahara"]["group"]) == 2
    assert (out / "heads.png").is_file()
    assert "Top heads: L" in capsys.readouterr().out
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # checkpoint removed
    # existing output is refused before any work
    assert main(["heads", "--model", str(model_dir), "--data", str(data), "--no-progress", "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--score", "gships", "--rank", "3"], "rank=3 needs more prompts"),
        (["--limit", "0"], "--limit must be at least 1"),
        (["--eps", "2"], "eps must be in [0, 1]"),
        (["--batch-heads", "0"], "--batch-heads must be at least 1"),
        (["--max-batch-tokens", "-1"], "--max-batch-tokens must be at least 0"),
        (["--approx-tolerance", "-0.5"], "--approx-tolerance must be at least 0"),
        (["--approx-top-h", "0"], "--approx-top-h must be at least 1"),
        (["--sahara-steps", "99"], "exceeds the 8 heads"),
        (["--data", "MISSING"], "Data file not found"),
    ],
)
def test_cli_heads_errors(tmp_path, capsys, extra, msg):
    model_dir = save_tiny_model("llama", tmp_path / "model")
    args = ["heads", "--model", str(model_dir), "--data", str(_jsonl(tmp_path)), "--no-progress",
            "--out", str(tmp_path / "o")]
    args += [a if a != "MISSING" else str(tmp_path / "missing.jsonl") for a in extra]
    assert main(args) == 2
    assert msg in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_cli_rejects_unknown_choices(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["heads", "--engine", "turbo", "--out", "x"])
    assert exc.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_cli_heads_speed_flags_reach_the_config(tmp_path, capsys):
    model_dir = save_tiny_model("llama", tmp_path / "model")
    out = tmp_path / "h"
    rc = main(["heads", "--model", str(model_dir), "--data", str(_jsonl(tmp_path)), "--engine", "approx",
               "--approx-top-h", "2", "--approx-tolerance", "2", "--no-approx-adaptive", "--no-prefix-reuse",
               "--max-batch-tokens", "0", "--no-progress", "--out", str(out)])
    assert rc == 0, capsys.readouterr().err
    cfg = json.loads((out / "heads.json").read_text())["config"]
    assert cfg["approx_top_h"] == 2 and cfg["approx_tolerance"] == 2.0 and cfg["approx_adaptive"] is False
    assert cfg["prefix_reuse"] is False and cfg["max_batch_tokens"] == 0
