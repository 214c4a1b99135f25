"""scripts/results_tables.py on a tiny run: the README block and docs/results JSON come from the run folder."""

from __future__ import annotations

import json

from hsr.cli import main
from hsr.testing.scripts import load_script
from test_run_pipeline import tiny_run_config  # noqa: F401  (fixture)


def test_results_script_writes_json_and_readme_block(tiny_run_config, tmp_path, capsys):  # noqa: F811
    config_path, run_dir, _ = tiny_run_config
    assert main(["run", str(config_path), "--no-progress"]) == 0
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:default-run:start -->\nold table\n<!-- results:default-run:end -->\nrest\n")
    out_json = tmp_path / "docs" / "default-run.json"
    assert load_script("scripts/results_tables.py").main([str(run_dir), "--json", str(out_json), "--readme", str(readme)]) == 0
    record = json.loads(out_json.read_text())
    assert record["git_commit"] and record["machine"]["cpu_count"] >= 1
    models = record["models"]
    assert set(models) == {"dense", "pruned", "realigned", "control"}
    for label, m in models.items():
        metrics = json.loads((run_dir / "eval" / label / "metrics.json").read_text())
        harmful = m["harmful"]
        assert sum(r["k"] for r in harmful.values()) == harmful["complied"]["n"] == metrics["asr"]["n"]
        assert harmful["complied"] == metrics["asr"] and m["perplexity"] == metrics["perplexity"]
        assert sum(r["k"] for r in m["benign"].values()) == metrics["over_refusal"]["n"]
    assert models["realigned"]["restored_params"] > 0 and "rsr" in models["realigned"]
    assert "mcnemar_p" in models["pruned"]["vs_dense"]
    text = readme.read_text()
    assert "old table" not in text and text.startswith("intro\n") and text.endswith("rest\n")
    assert "| realigned" in text and record["git_commit"][:10] in text
