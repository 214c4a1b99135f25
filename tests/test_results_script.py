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


def test_blocks_are_replaced_in_every_file_that_holds_them(tmp_path):
    """--readme README.md --readme docs/experiments/PAGE.md: each block where it lives; a missing one fails, nothing written."""
    import pytest

    script = load_script("scripts/results_tables.py")
    readme, page = tmp_path / "README.md", tmp_path / "page.md"
    readme.write_text("a\n<!-- results:default-run:start -->\nold\n<!-- results:default-run:end -->\nb\n")
    page.write_text("c\n<!-- results:validation-sweep:start -->\nold\n<!-- results:validation-sweep:end -->\nd\n")
    script.replace_blocks([readme, page], {"default-run": "RUN", "validation-sweep": "SWEEP"})
    assert readme.read_text() == "a\n<!-- results:default-run:start -->\nRUN\n<!-- results:default-run:end -->\nb\n"
    assert page.read_text() == "c\n<!-- results:validation-sweep:start -->\nSWEEP\n<!-- results:validation-sweep:end -->\nd\n"
    with pytest.raises(SystemExit, match="results:missing:start"):
        script.replace_blocks([readme, page], {"default-run": "NEW", "missing": "X"})
    assert "RUN" in readme.read_text()
