"""The lm-eval bridge (hsr.evaluation.lm_eval_bridge) on tiny models with a local task, offline.

The shipped task tests/data/lm_eval/hsr_mcq.yaml scores hsr's multiple-choice questions the way hsr's
own scorer does (chat-templated question, each choice's text as the continuation). lm-eval moves the
template's trailing newline from the context into every continuation, so each lm-eval log-likelihood
is hsr's plus the same log p("\\n" | context) for all choices of a question: the predictions, and so
the accuracies, must agree exactly.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import tiny_loaded

pytest.importorskip("lm_eval", reason="lm-eval is not installed (pip install 'hsr[lm-eval]')")

from hsr.cli import main  # noqa: E402
from hsr.data import Sample, render_chat  # noqa: E402
from hsr.errors import ConfigError  # noqa: E402
from hsr.evaluation.lm_eval_bridge import (  # noqa: E402
    SAMPLES_FILE, check_tasks, local_task_files, resolve_tasks, run_lm_eval, summarize, task_metrics,
)
from hsr.evaluation.mcq import continuation_scores, load_mcq, mcq_accuracy  # noqa: E402
from hsr.testing.tiny import save_tiny_model  # noqa: E402
from test_run_pipeline import tiny_run_config  # noqa: E402, F401  (fixture)

DATA = Path(__file__).parent / "data" / "lm_eval"
TASK = DATA / "hsr_mcq.yaml"
MCQ = DATA / "mcq.jsonl"


def _samples(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / SAMPLES_FILE).read_text().splitlines()]


@pytest.mark.parametrize("arch", ["llama", "qwen2_vl"])
def test_bridge_scores_exactly_as_hsr_mcq(arch, tmp_path):
    loaded = tiny_loaded(arch)
    items = load_mcq(MCQ)
    result = run_lm_eval(loaded, [str(TASK)], tmp_path, chat_template=True, batch_size=4)
    hsr = mcq_accuracy(loaded, items)
    acc = result["lm_eval"]["hsr_mcq"]["acc"]
    assert acc["n"] == len(items) == 12
    assert acc["value"] == sum(hsr["correct"]) / len(items)
    rows = sorted(_samples(tmp_path), key=lambda r: r["doc_id"])
    lm_predictions = [max(range(len(r["responses"])), key=lambda i: (r["responses"][i][0], -i)) for r in rows]
    assert lm_predictions == hsr["predictions"]
    assert [bool(r["acc"]) for r in rows] == hsr["correct"]
    for item, row in zip(items, rows):
        prompt = render_chat(loaded.processor, Sample(item.question))
        stem = prompt.rstrip()
        moved = prompt[len(stem):]
        assert moved == "\n"  # the template's trailing whitespace, which lm-eval moves into the continuation
        lm = [resp[0] for resp in row["responses"]]
        # lm-eval's numbers are hsr's scorer on (context without it, it + choice) ...
        direct = [s for s, _ in continuation_scores(loaded, stem, [moved + c for c in item.choices])]
        assert lm == pytest.approx(direct, abs=1e-4)
        # ... which is hsr's own score plus one constant per question: the same argmax
        own = [s for s, _ in continuation_scores(loaded, prompt, item.choices)]
        offsets = [a - b for a, b in zip(lm, own)]
        assert max(offsets) - min(offsets) == pytest.approx(0.0, abs=1e-4)
        assert offsets[0] < 0  # log p(newline) itself


def test_without_chat_template_prompts_are_plain(tmp_path):
    loaded = tiny_loaded("llama")
    run_lm_eval(loaded, [str(TASK)], tmp_path, chat_template=False, batch_size=4, limit=3)
    results = json.loads((tmp_path / "lm_eval.json").read_text())
    assert results["n-samples"]["hsr_mcq"]["effective"] == 3
    assert len(_samples(tmp_path)) == 3


def test_bridge_on_a_disk_offloaded_model_gives_the_same_numbers(tmp_path):
    from hsr.loading import load_model
    from hsr.placement import is_offloaded

    path = save_tiny_model("llama", tmp_path / "model")
    plain = load_model(str(path))
    size = sum(t.numel() * t.element_size() for t in plain.model.state_dict().values())
    placed = load_model(str(path), max_memory=f"cpu={size // 4}", offload_folder=str(tmp_path / "offload"))
    assert is_offloaded(placed.model)
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    a = run_lm_eval(plain, [str(TASK)], tmp_path / "a", chat_template=True)
    b = run_lm_eval(placed, [str(TASK)], tmp_path / "b", chat_template=True)
    assert a["lm_eval"] == b["lm_eval"]
    rows_a, rows_b = _samples(tmp_path / "a"), _samples(tmp_path / "b")
    for ra, rb in zip(rows_a, rows_b):
        assert [x[0] for x in ra["responses"]] == pytest.approx([x[0] for x in rb["responses"]], abs=1e-5)


def test_cli_offline_from_another_folder_agrees_with_mcq(tmp_path):
    """`hsr evaluate --lm-eval TASK.yaml` in a fresh process with the Hub switched off, run from a folder
    where the YAML's relative data path means nothing: hsr reads it against the YAML's folder."""
    model = save_tiny_model("llama", tmp_path / "model")
    out = tmp_path / "ev"
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "hsr", "evaluate", "--model", str(model), "--suite", "utility", "--ppl-text", "none",
           "--mcq", str(MCQ), "--lm-eval", str(TASK), "--lm-eval-chat-template", "--no-progress", "--out", str(out)]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    acc = metrics["lm_eval"]["hsr_mcq"]["acc"]
    assert acc["value"] == metrics["mcq_accuracy"]["value"] and acc["n"] == metrics["mcq_accuracy"]["n"] == 12
    assert acc["stderr"] > 0
    assert metrics["lm_eval_detail"]["chat_template"] is True and metrics["config"]["lm_eval"] == [str(TASK)]
    hsr_rows = [json.loads(line) for line in (out / "mcq.jsonl").read_text().splitlines()]
    lm_rows = sorted(_samples(out), key=lambda r: r["doc_id"])
    assert [bool(r["acc"]) for r in lm_rows] == [r["correct"] for r in hsr_rows]
    assert "hsr_mcq acc" in done.stdout  # the results table has the task's column


# ------------------------------------------------------------------------------------ one-line errors
def _no_model_load(monkeypatch):
    import hsr.commands.evaluate as ev

    def fail(*a, **k):
        raise AssertionError("the model was loaded before the error")

    monkeypatch.setattr(ev, "load_from_args", fail)


def _cli_error(tmp_path, capsys, *extra) -> str:
    code = main(["evaluate", "--model", str(tmp_path / "absent-model"), "--suite", "utility", "--ppl-text", "none",
                 "--mcq", "none", "--out", str(tmp_path / "o"), *extra])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and err.startswith("hsr evaluate: error: "), err
    return err


def test_missing_lm_eval_is_one_line_before_loading(tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    monkeypatch.setitem(sys.modules, "lm_eval", None)  # import lm_eval -> ImportError
    err = _cli_error(tmp_path, capsys, "--lm-eval", str(TASK))
    assert "pip install 'hsr[lm-eval]'" in err


def test_task_yaml_problems_are_one_line_before_loading(tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    assert "does not exist" in _cli_error(tmp_path, capsys, "--lm-eval", str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("task: [unclosed\n")
    assert "not a valid lm-eval task YAML" in _cli_error(tmp_path, capsys, "--lm-eval", str(bad))
    nameless = tmp_path / "nameless.yaml"
    nameless.write_text("dataset_path: json\n")
    assert "needs a 'task' name" in _cli_error(tmp_path, capsys, "--lm-eval", str(nameless))
    missing = tmp_path / "missing.yaml"
    missing.write_text(TASK.read_text().replace("test: mcq.jsonl", "test: not-there.jsonl").replace("hsr_mcq", "hsr_gone"))
    err = _cli_error(tmp_path, capsys, "--lm-eval", str(missing))
    assert "lm-eval task 'hsr_gone': its data could not be loaded" in err and "local task YAML" in err


def test_unknown_task_name_is_one_line_with_suggestions(tmp_path, capsys, monkeypatch):
    _no_model_load(monkeypatch)
    err = _cli_error(tmp_path, capsys, "--lm-eval", "arc_easyy")
    assert "Unknown lm-eval task 'arc_easyy'" in err and "arc_easy" in err
    assert "matches no task" in _cli_error(tmp_path, capsys, "--lm-eval", "zzz_no_such_*")


def test_hub_task_without_hub_access_is_one_line(tmp_path):
    """A real lm-eval task whose dataset lives on the Hub, with the Hub off: one line, no model loaded."""
    env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(tmp_path / "c")}
    cmd = [sys.executable, "-m", "hsr", "evaluate", "--model", str(tmp_path / "absent-model"), "--suite", "utility",
           "--ppl-text", "none", "--mcq", "none", "--lm-eval", "arc_easy", "--out", str(tmp_path / "o")]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    lines = [line for line in done.stderr.splitlines() if line.startswith("hsr evaluate: error:")]
    assert done.returncode == 2 and len(lines) == 1, done.stderr[-3000:]
    assert "lm-eval task 'arc_easy': its data could not be loaded" in lines[0]


# ------------------------------------------------------------------------------------ pieces
def test_resolve_reads_relative_data_against_the_yaml_folder():
    tasks = resolve_tasks([str(TASK)])
    (cfg,) = tasks.load
    assert cfg["dataset_kwargs"]["data_files"] == {"test": str(DATA / "mcq.jsonl")}
    assert tasks.folders == (str(DATA),) and tasks.defaults is False
    assert local_task_files([str(TASK), "arc_easy"]) == [TASK, DATA / "mcq.jsonl"]
    with pytest.raises(ConfigError, match="names no task"):
        resolve_tasks([" "])
    assert check_tasks([str(TASK)]).specs == (str(TASK),)


def test_results_are_summarized_per_requested_task_and_group():
    results = {
        "results": {
            "grp": {"alias": "grp", "acc,none": 0.5, "acc_stderr,none": 0.1},
            "grp_a": {"acc,none": 0.4, "acc_stderr,none": 0.2},
            "bare": {"alias": "bare"},  # a group without an aggregate: reported through its subtasks
            "bare_x": {"exact_match,strict-match": 0.25, "exact_match_stderr,strict-match": "N/A"},
            "solo": {"acc,none": 1, "acc_norm,none": 0.75, "acc_norm_stderr,none": 0.05, "acc_stderr,none": 0.0},
        },
        "group_subtasks": {"grp": ["grp_a"], "bare": ["bare_x"]},
        "n-samples": {"solo": {"original": 10, "effective": 4}},
    }
    out = summarize(results)
    assert list(out) == ["grp", "bare_x", "solo"]
    assert out["grp"] == {"acc": {"value": 0.5, "stderr": 0.1, "n": None}}
    assert out["bare_x"] == {"exact_match[strict-match]": {"value": 0.25, "stderr": None, "n": None}}
    assert out["solo"]["acc_norm"] == {"value": 0.75, "stderr": 0.05, "n": 4}
    assert task_metrics({"alias": "x", "acc,none": True}) == {}  # booleans are not scores


def test_options_declare_flags_and_run_config_keys():
    from hsr.cli import build_parser
    from hsr.evaluation import EvalConfig
    from hsr.options import from_args
    from hsr.pipeline.config import eval_options, load_run_config
    from hsr.pipeline.sections import SHARED, derived_defaults

    args = build_parser().parse_args(["evaluate", "--out", "x", "--lm-eval", "a.yaml, arc_easy", "--lm-eval-fewshot",
                                      "0", "--lm-eval-limit", "5", "--lm-eval-chat-template"])
    config = from_args(args, EvalConfig, fixed={"max_length": 64, "seed": 0}, skip=SHARED)
    assert config.lm_eval == ("a.yaml", "arc_easy") and config.lm_eval_fewshot == 0 and config.lm_eval_limit == 5
    assert config.lm_eval_chat_template is True and config.lm_eval_batch_size == 8
    defaults = derived_defaults()["evaluate"]
    assert defaults["lm_eval"] is None and defaults["lm_eval_chat_template"] is False
    run = load_run_config(None, [f"evaluate.lm_eval=[{TASK}]", "evaluate.lm_eval_limit=3"])
    options = eval_options(run)
    assert options.lm_eval == (str(TASK),) and options.lm_eval_limit == 3
    with pytest.raises(ConfigError, match="lm_eval_limit"):
        eval_options(load_run_config(None, ["evaluate.lm_eval_limit=0"]))


def test_hsr_run_with_lm_eval_fills_metrics_the_table_and_the_report(tiny_run_config, capsys):
    """The run-config key end to end: each evaluated model's metrics.json holds the task's accuracy (equal
    to hsr's own MCQ accuracy on the same questions), the printed table and report.md get its column."""
    import yaml

    config_path, run_dir, _ = tiny_run_config  # the pipeline's tiny run, with the shipped task added
    config = yaml.safe_load(config_path.read_text())
    config["evaluate"].update(lm_eval=[str(TASK)], lm_eval_chat_template=True, mcq=str(MCQ), models=["dense", "pruned"])
    config["realign"]["control"] = False
    config_path.write_text(yaml.safe_dump(config))
    assert main(["run", str(config_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    for label in ("dense", "pruned"):
        metrics = json.loads((run_dir / "eval" / label / "metrics.json").read_text())
        acc = metrics["lm_eval"]["hsr_mcq"]["acc"]
        assert acc["value"] == pytest.approx(metrics["mcq_accuracy"]["value"]) and acc["n"] == metrics["mcq_accuracy"]["n"]
    assert "hsr_mcq acc" in out
    assert "hsr_mcq acc" in (run_dir / "report" / "report.md").read_text()
