"""`hsr sweep` and the align stage inside `hsr run`, end to end on a tiny model."""

from __future__ import annotations

import json

import pytest
import yaml

from hsr.cli import main
from hsr.pipeline.config import load_run_config
from hsr.errors import ConfigError
from hsr.report.sweep import safety_break

from test_run_pipeline import tiny_run_config  # noqa: F401  (fixture)


def _rate(v, lo, hi):
    return {"value": v, "ci_low": lo, "ci_high": hi, "n": 100, "k": int(100 * v)}


def test_safety_break_is_the_first_sparsity_whose_interval_clears_dense():
    dense = _rate(0.05, 0.02, 0.11)
    points = [(0.6, _rate(0.5, 0.4, 0.6), 0.1), (0.3, _rate(0.06, 0.03, 0.12), 0.0), (0.5, _rate(0.2, 0.13, 0.29), 0.2),
              (0.4, _rate(0.12, 0.07, 0.2), 0.0)]
    assert safety_break(dense, points) == 0.5  # 0.4's interval still overlaps dense's
    assert safety_break(dense, points[:2]) == 0.6
    assert safety_break(dense, [(0.3, _rate(0.06, 0.03, 0.12), 0.0)]) is None
    assert safety_break(None, points) is None


def test_safety_does_not_break_where_the_pruned_model_no_longer_writes():
    dense = _rate(0.05, 0.02, 0.11)
    broken = [(0.5, _rate(0.2, 0.13, 0.29), 0.45), (0.6, _rate(0.3, 0.2, 0.4), 0.21)]
    assert safety_break(dense, broken) is None  # complied rose, but over 20% are non-answers or degenerate
    assert safety_break(dense, broken + [(0.7, _rate(0.3, 0.2, 0.4), 0.05)]) == 0.7


def test_sweep_config_is_validated_before_any_model_loads(tmp_path):
    with pytest.raises(ConfigError, match="sweep.methods"):
        load_run_config(None, ['sweep.sparsities=["0.5"]', 'sweep.methods=["pruneall"]'])
    with pytest.raises(ConfigError, match="sweep.sparsities"):
        load_run_config(None, ["sweep.sparsities=0.5"])
    with pytest.raises(ConfigError, match="align.enabled"):
        load_run_config(None, ["align.enabled=maybe"])
    with pytest.raises(ConfigError, match="align.epochs"):
        load_run_config(None, ["align.epochs=0"])


def test_sweep_shares_dense_stages_and_writes_one_folder_per_point(tiny_run_config, tmp_path, capsys):
    cfg_path, run, _ = tiny_run_config
    assert main(["sweep", str(cfg_path), "--sparsities", "0.3,2:4", "--methods", "wanda,magnitude", "--no-progress"]) == 0
    for point in ("wanda-0.3", "wanda-2of4", "magnitude-0.3", "magnitude-2of4"):
        for stage in ("pruned", "realigned", "control", "eval/pruned", "eval/realigned", "eval/control"):
            assert (run / point / stage / "stage.json").is_file(), (point, stage)
        summary = json.loads((run / point / "pruned" / "summary.json").read_text())
        assert summary["config"]["method"] == point.split("-")[0]
    assert (run / "eval" / "dense" / "metrics.json").is_file()
    assert (run / "heads" / "heads.json").is_file() and not (run / "wanda-0.3" / "heads").exists()
    md = (run / "report" / "sweep.md").read_text()
    assert md.count("| wanda |") == 2 and md.count("| magnitude |") == 2
    assert (run / "report" / "sweep.png").stat().st_size > 1000
    out = capsys.readouterr().out
    assert "wanda: safety" in out and "magnitude: safety" in out
    # a re-run reuses every stage
    assert main(["sweep", str(cfg_path), "--sparsities", "0.3,2:4", "--methods", "wanda,magnitude", "--no-progress"]) == 0
    assert "done in" not in capsys.readouterr().out


def test_run_with_align_uses_the_aligned_model_as_dense(tiny_run_config, tmp_path, capsys):
    cfg_path, run, _ = tiny_run_config
    config = yaml.safe_load(cfg_path.read_text())
    harmful = config["heads"]["data"]
    config["align"] = {"enabled": True, "harmful": harmful, "benign": config["evaluate"]["benign"], "epochs": 1,
                       "batch_size": 4, "response_tokens": 4, "train_layers": 1}
    config["evaluate"] = {**config["evaluate"], "models": ["dense", "pruned"]}
    cfg_path.write_text(yaml.safe_dump(config))
    assert main(["run", str(cfg_path), "--no-progress"]) == 0
    summary = json.loads((run / "aligned" / "summary.json").read_text())
    assert summary["refusal_examples"] == 6 and summary["helpful_examples"] >= 1
    dense_eval = json.loads((run / "eval" / "dense" / "metrics.json").read_text())
    assert str(run / "aligned") in json.dumps(dense_eval)
    prune_summary = json.loads((run / "pruned" / "summary.json").read_text())
    assert str(run / "aligned") in json.dumps(prune_summary)
