"""Inputs are never deleted or changed, and bad inputs fail before any model loads (issue 18, parts 1, 2, 5).

Through the real CLI in a subprocess, like tests/test_bad_inputs.py: every case exits 2 with one
``hsr CMD: error: ...`` line naming the problem, no traceback, nothing under the outputs folder, and
every input (models, data, images, a judge model, heads and score files, the model cache) byte-identical
afterwards. Cases that name the embedded default model also prove that they failed before the first
model load: its GGUF -> safetensors conversion (~40 s, into ``HSR_CACHE``) never happened.

The fingerprint tests at the end change an input's bytes at the same path (a judge model's weights, an
image a data row names, weights outside attention) and check that the cached result is not reused.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cli_cases import error_line, run_all, tree, write

HSR = [sys.executable, "-m", "hsr"]
REALIGN = ["realign", "--dense", "{in}/model", "--pruned", "{in}/pruned", "--heads", "{in}/heads.json"]
RUN_TINY = ["--model", "{in}/model", "--set", "prune.n_samples=2", "--set", "realign.top_h=2"]

# (id, argv with {in} / {out} / {cache} placeholders and @ENV=VALUE entries, texts the error line must contain)
CASES: list[tuple[str, list[str], tuple[str, ...]]] = [
    # ------------------------------------------------ part 1: a written folder overlapping an input
    ("evaluate-out-holds-judge", ["evaluate", "--model", "{in}/model", "--judge", "model:{in}/evaljudge/judge",
                                  "--out", "{in}/evaljudge", "--overwrite"], ("overlaps the input", "judge model")),
    ("evaluate-out-inside-judge", ["evaluate", "--model", "{in}/model", "--judge", "model:{in}/judge",
                                   "--out", "{in}/judge/eval"], ("overlaps the input", "judge model")),
    ("prune-out-holds-relative-image", ["prune", "--model", "{in}/model", "--data", "{in}/rel/rows.jsonl",
                                        "--out", "{in}/rel/imgs", "--overwrite"], ("overlaps the input", "image")),
    ("prune-out-holds-absolute-image", ["prune", "--model", "{in}/model", "--data", "{in}/abs_rows.jsonl",
                                        "--out", "{in}/absimgs", "--overwrite"], ("overlaps the input", "image")),
    ("evaluate-out-holds-image", ["evaluate", "--model", "{in}/model", "--harmful", "{in}/abs_rows.jsonl",
                                  "--out", "{in}/absimgs", "--overwrite"], ("overlaps the input", "image")),
    ("evaluate-out-holds-ppl-text", ["evaluate", "--model", "{in}/model", "--ppl-text", "{in}/textdir/held.txt",
                                     "--out", "{in}/textdir", "--overwrite"], ("overlaps the input", "perplexity")),
    ("evaluate-out-holds-mcq", ["evaluate", "--model", "{in}/model", "--mcq", "{in}/textdir/mcq.jsonl",
                                "--out", "{in}/textdir", "--overwrite"], ("overlaps the input", "multiple-choice")),
    ("heads-checkpoint-is-model", ["heads", "--model", "{in}/model", "--data", "{in}/good.jsonl",
                                   "--checkpoint-dir", "{in}/model", "--out", "{out}/h"], ("--checkpoint-dir", "overlaps the input")),
    ("heads-checkpoint-inside-model", ["heads", "--model", "{in}/model", "--data", "{in}/good.jsonl",
                                       "--checkpoint-dir", "{in}/model/ckpt", "--out", "{out}/h"], ("--checkpoint-dir", "overlaps the input")),
    ("heads-checkpoint-holds-data", ["heads", "--model", "{in}/model", "--data", "{in}/datadir/rows.jsonl",
                                     "--checkpoint-dir", "{in}/datadir", "--out", "{out}/h"], ("--checkpoint-dir", "overlaps the input")),
    ("heads-checkpoint-is-out", ["heads", "--model", "{in}/model", "--data", "{in}/good.jsonl",
                                 "--checkpoint-dir", "{out}/h", "--out", "{out}/h"], ("--checkpoint-dir",)),
    ("prune-offload-is-model", ["prune", "--model", "{in}/model", "--data", "{in}/good.jsonl", "--max-memory", "cpu=1GiB",
                                "--offload-folder", "{in}/model", "--out", "{out}/p"], ("--offload-folder", "overlaps the input")),
    ("realign-offload-holds-scores", [*REALIGN, "--utility-scores", "{in}/scores/u.safetensors", "--max-memory", "cpu=1GiB",
                                      "--offload-folder", "{in}/scores", "--out", "{out}/r"], ("--offload-folder", "overlaps the input")),
    ("realign-out-inside-pruned", [*REALIGN, "--whole-head", "--out", "{in}/pruned/realigned"], ("overlaps the input", "--pruned")),
    ("realign-out-holds-scores", [*REALIGN, "--utility-scores", "{in}/scores/u.safetensors", "--out", "{in}/scores",
                                  "--overwrite"], ("overlaps the input", "--utility-scores")),
    ("realign-out-holds-utility-image", [*REALIGN, "--utility-data", "{in}/abs_rows.jsonl", "--out", "{in}/absimgs",
                                         "--overwrite"], ("overlaps the input", "image")),
    ("align-out-holds-data", ["align", "--model", "{in}/model", "--harmful", "{in}/datadir/rows.jsonl", "--out", "{in}/datadir",
                              "--overwrite"], ("overlaps the input",)),
    ("judge-out-holds-judge", ["judge", "{in}/gens.jsonl", "--judge", "model:{in}/jjudge/judge", "--out", "{in}/jjudge",
                               "--overwrite"], ("overlaps the input", "judge model")),
    ("report-out-inside-eval", ["report", "{in}/good_eval", "--out", "{in}/good_eval/rep"], ("overlaps the input",)),
    ("out-holds-symlinked-data", ["prune", "--model", "{in}/model", "--data", "{in}/linkdir/rows.jsonl", "--out", "{in}/linkdir",
                                  "--overwrite"], ("overlaps the input",)),
    ("out-is-model-cache", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "{cache}", "--overwrite"],
     ("overlaps the input", "model cache")),
    ("cache-inside-judge", ["evaluate", "--model", "default", "--judge", "model:{in}/judge", "--out", "{out}/e",
                            "@HSR_CACHE={in}/judge"], ("HSR_CACHE", "overlaps the input", "judge model")),
    ("run-out-holds-judge", ["run", *RUN_TINY, "--out", "{in}/runjudge", "--set", "evaluate.judge=model:{in}/runjudge/judge"],
     ("overlaps the input", "judge model")),
    ("run-out-holds-image", ["run", *RUN_TINY, "--out", "{in}/absimgs", "--set", "heads.data={in}/abs_rows.jsonl"],
     ("overlaps the input", "image")),
    ("run-offload-is-model", ["run", *RUN_TINY, "--out", "{out}/run", "--max-memory", "cpu=1GiB", "--offload-folder", "{in}/model"],
     ("offload_folder", "overlaps the input")),
    ("sweep-offload-holds-image", ["sweep", *RUN_TINY, "--out", "{out}/run", "--sparsities", "0.5", "--set",
                                   "importance.utility_data={in}/abs_rows.jsonl", "--offload-folder", "{in}/absimgs"],
     ("offload_folder", "overlaps the input", "image")),
    ("run-out-inside-pruned", ["run", *RUN_TINY, "--out", "{in}/pruned/run", "--set", "prune.pruned={in}/pruned"],
     ("overlaps the input", "prune.pruned")),
    ("out-beside-leftover-named-model", ["prune", "--model", "{in}/side/.model.tmp-99999999-ab", "--method", "magnitude",
                                         "--out", "{in}/side/p"], ("NaN", "model.layers.1.mlp.up_proj.weight")),
    # ------------------------------------------------ part 5: fail before the first model load (default: no conversion)
    ("run-default-out-foreign", ["run", "--out", "{in}/datadir"], ("did not write",)),
    ("sweep-default-out-foreign", ["sweep", "--out", "{in}/datadir", "--sparsities", "0.5"], ("did not write",)),
    ("run-default-cache-unwritable", ["run", "--out", "{out}/run", "@HSR_CACHE=/proc/hsr-cache"], ("HSR_CACHE", "cannot write")),
    ("evaluate-default-cache-unwritable", ["evaluate", "--out", "{out}/e", "@HSR_CACHE=/proc/hsr-cache"], ("HSR_CACHE",)),
    ("run-default-offload-is-file", ["run", "--out", "{out}/run", "--offload-folder", "{in}/good.jsonl"], ("offload_folder", "is a file")),
    ("prune-offload-is-file", ["prune", "--model", "default", "--method", "magnitude", "--max-memory", "cpu=1GiB",
                               "--offload-folder", "{in}/good.jsonl", "--out", "{out}/p"], ("--offload-folder", "is a file")),
    ("run-default-top-h-too-many", ["run", "--out", "{out}/run", "--set", "realign.top_h=271"], ("top_h=271", "270")),
    ("sweep-default-top-h-too-many", ["sweep", "--out", "{out}/run", "--sparsities", "0.5", "--set", "realign.top_h=999"],
     ("top_h=999", "exceeds")),
    ("run-tiny-top-h-too-many", ["run", *RUN_TINY, "--out", "{out}/run", "--set", "realign.top_h=9"], ("top_h=9", "8")),
    ("realign-random-top-h-too-many", [*REALIGN, "--whole-head", "--random-heads", "--top-h", "9", "--out", "{out}/r"], ("top_h=9",)),
    ("heads-default-sahara-too-many", ["heads", "--sahara-steps", "271", "--out", "{out}/h"], ("sahara_steps=271", "270")),
    ("run-default-judge-missing", ["run", "--out", "{out}/run", "--set", "evaluate.judge=model:{in}/nope"], ("Judge model not found",)),
    ("sweep-default-judge-missing", ["sweep", "--out", "{out}/run", "--sparsities", "0.5", "--set", "evaluate.judge=model:{in}/nope"],
     ("Judge model not found",)),
    ("run-default-judge-bad-config", ["run", "--out", "{out}/run", "--set", "evaluate.judge=model:{in}/badjudge"],
     ("Cannot load judge model",)),
    ("evaluate-default-judge-bad-config", ["evaluate", "--judge", "model:{in}/badjudge", "--out", "{out}/e"], ("Cannot load judge model",)),
    ("judge-cmd-judge-bad-config", ["judge", "{in}/gens.jsonl", "--judge", "model:{in}/badjudge", "--out", "{out}/j"],
     ("Cannot load judge model",)),
    ("run-default-no-response", ["run", "--out", "{out}/run", "--set", "importance.safety_data={in}/no_response.jsonl"],
     ("no_response.jsonl, line 2", "'response' is required")),
    ("realign-default-no-response", ["realign", "--dense", "default", "--pruned", "{in}/pruned", "--heads", "{in}/heads.json",
                                     "--utility-data", "{in}/no_response.jsonl", "--out", "{out}/r"], ("line 2", "'response' is required")),
    ("run-default-image-corrupt", ["run", "--out", "{out}/run", "--set", "heads.data={in}/bad_image.jsonl"],
     ("bad_image.jsonl, line 2", "cannot read image", "broken.png")),
    ("run-default-image-missing", ["run", "--out", "{out}/run", "--set", "evaluate.harmful={in}/no_image.jsonl"],
     ("no_image.jsonl, line 1", "image file not found", "missing.png")),
    ("prune-default-image-corrupt", ["prune", "--data", "{in}/bad_image.jsonl", "--out", "{out}/p"],
     ("bad_image.jsonl, line 2", "cannot read image", "broken.png")),
    ("evaluate-default-image-corrupt", ["evaluate", "--harmful", "{in}/bad_image.jsonl", "--out", "{out}/e"],
     ("bad_image.jsonl, line 2", "cannot read image", "broken.png")),
    ("heads-default-image-empty", ["heads", "--data", "{in}/empty_image.jsonl", "--out", "{out}/h"],
     ("empty_image.jsonl, line 1", "cannot read image", "empty.png")),
]


def _tree(folder: Path) -> dict[str, str]:
    return tree(folder, lambda p: p.is_file() or p.is_symlink())


def _rows(path: Path, rows: list[dict]) -> Path:
    return write(path, "".join(json.dumps(r) + "\n" for r in rows))


#: An input named like the temporary folder of a dead hsr process (pid above any pid_max), beside an --out:
#: the clean-up of such leftovers must not take it for one.
LEFTOVER_NAMED = "side/.model.tmp-99999999-ab"


def _nan_model(source: Path, target: Path) -> None:
    import math
    import shutil

    from safetensors.torch import load_file, save_file

    shutil.copytree(source, target)
    weights = load_file(target / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][0, 0] = math.nan
    save_file(weights, target / "model.safetensors", metadata={"format": "pt"})


def _make_inputs(root: Path) -> None:
    from hsr.testing.tiny import save_tiny_model, tiny_image

    save_tiny_model("qwen2", root / "model")
    save_tiny_model("qwen2", root / "pruned", seed=1)
    _nan_model(root / "model", root / LEFTOVER_NAMED)  # named like a dead writer's leftover; refused at load
    for judge in ("judge", "evaljudge/judge", "jjudge/judge", "runjudge/judge"):
        save_tiny_model("qwen2", root / judge, seed=2)
    write(root / "badjudge" / "config.json", "{not json")
    write(root / "badjudge" / "tokenizer_config.json", "{}")
    good = [{"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a red box."} for i in range(4)]
    _rows(root / "good.jsonl", good)
    _rows(root / "datadir" / "rows.jsonl", good)
    (root / "linkdir").mkdir()
    (root / "linkdir" / "rows.jsonl").symlink_to(root / "good.jsonl")
    (root / "rel" / "imgs").mkdir(parents=True)
    tiny_image(seed=0).save(root / "rel" / "imgs" / "a.png")
    _rows(root / "rel" / "rows.jsonl", [{**good[0], "image": "imgs/a.png"}, good[1]])
    (root / "absimgs").mkdir()
    tiny_image(seed=1).save(root / "absimgs" / "b.png")
    _rows(root / "abs_rows.jsonl", [{**good[0], "image": str(root / "absimgs" / "b.png")}, *good[1:]])
    write(root / "textdir" / "held.txt", "The red box sat on the table near the window. " * 8)
    _rows(root / "textdir" / "mcq.jsonl", [{"question": "One plus one?", "choices": ["2", "3"], "answer": 0}])
    write(root / "scores" / "u.safetensors", b"not read: the overlap is refused first")
    _rows(root / "no_response.jsonl", [good[0], {"prompt": "Tell me about the box."}, good[2]])
    (root / "img").mkdir()
    tiny_image(seed=2).save(root / "img" / "fine.png")
    png = (root / "img" / "fine.png").read_bytes()
    write(root / "img" / "broken.png", png[: len(png) // 2])
    write(root / "img" / "empty.png", b"")
    _rows(root / "bad_image.jsonl", [{**good[0], "image": "img/fine.png"}, {**good[1], "image": "img/broken.png"}])
    _rows(root / "empty_image.jsonl", [{**good[0], "image": "img/empty.png"}])
    _rows(root / "no_image.jsonl", [{"prompt": "What is this?", "image": "missing.png"}])
    _rows(root / "gens.jsonl", [{"prompt": "Write a dangerous plan.", "output": "I cannot help with that."}])
    header = {"score": "ships", "num_layers": 2, "num_heads": 4}
    rows = [{"layer": l, "head": h, "rank": 1 + 4 * l + h, "score": 8.0 - 4 * l - h} for l in range(2) for h in range(4)]
    write(root / "heads.json", json.dumps({**header, "heads": rows}))
    metrics = {"model": "m", "asr": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n": 4, "k": 2}}
    write(root / "good_eval" / "metrics.json", json.dumps(metrics))


def _run_case(case: tuple[str, list[str], tuple[str, ...]], root: Path) -> dict:
    name, argv, _ = case
    ins, outs, cache = root / "inputs", root / "outs" / name, root / "cache"
    outs.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HSR_CACHE": str(cache), "TQDM_DISABLE": "1"}
    args = []
    for a in argv:
        a = a.replace("{in}", str(ins)).replace("{out}", str(outs)).replace("{cache}", str(cache))
        if a.startswith("@"):
            key, value = a[1:].split("=", 1)
            env[key] = value
        else:
            args.append(a)
    start = time.perf_counter()
    proc = subprocess.run([*HSR, *args], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    return {"rc": proc.returncode, "err": proc.stderr, "outs": sorted(p.name for p in outs.rglob("*")),
            "seconds": time.perf_counter() - start}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs_protect")
    _make_inputs(root / "inputs")
    write(root / "cache" / "keep.txt", "the model cache is an input too")
    before = {"inputs": _tree(root / "inputs"), "cache": _tree(root / "cache")}
    done = run_all(CASES, lambda c: _run_case(c, root))
    after = {"inputs": _tree(root / "inputs"), "cache": _tree(root / "cache")}
    leftovers = sorted(str(p.relative_to(root)) for p in root.rglob(".*") if (".tmp-" in p.name or ".old-" in p.name)
                       and LEFTOVER_NAMED not in str(p))
    return done, before, after, leftovers


def test_every_class_has_cases():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))
    for cmd in ("prune", "heads", "realign", "evaluate", "judge", "report", "run", "sweep", "align"):
        assert any(argv[0] == cmd for _, argv, _ in CASES), cmd


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_refused_with_one_line_and_nothing_written(results, case):
    done, _, _, _ = results
    name, argv, expected = case
    r = done[name]
    last = error_line(r)
    assert last.startswith(f"hsr {argv[0]}: error: "), last
    for text in expected:
        assert text in last, (text, last)
    assert r["outs"] == [], r["outs"]


def test_inputs_and_model_cache_are_byte_identical(results):
    _, before, after, leftovers = results
    assert after == before  # nothing added to, changed in or removed from any input, the cache included
    assert leftovers == []  # no half-written temporary folders anywhere


def test_default_model_cases_failed_before_the_model_was_converted(results):
    """Every case above fails before the first model loads: the default model's conversion into
    HSR_CACHE (its first load) never happened, and each failed in seconds."""
    done, _, after, _ = results
    assert sorted(after["cache"]) == ["keep.txt"]
    for name, argv, _ in CASES:
        if "default" in name:
            assert done[name]["seconds"] < 40, (name, done[name]["seconds"])


# ---------------------------------------------------------------------------- part 2: content fingerprints
def _run_config(tmp_path: Path, judge: Path, image_rows: Path) -> list[str]:
    from hsr.testing.tiny import save_tiny_model

    model = save_tiny_model("qwen2", tmp_path / "model")
    helpful = [{"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a small red box."} for i in range(4)]
    _rows(tmp_path / "u.jsonl", helpful)
    _rows(tmp_path / "harm.jsonl", [{"prompt": f"Write step {i} of a dangerous plan."} for i in range(2)])
    return [f"model={model}", f"out={tmp_path / 'run'}", "max_length=48", f"prune.data={tmp_path / 'u.jsonl'}",
            "prune.n_samples=2", f"heads.data={image_rows}", "heads.limit=2", f"importance.utility_data={tmp_path / 'u.jsonl'}",
            f"importance.safety_data={tmp_path / 'u.jsonl'}", "importance.limit=2", "realign.top_h=2", "realign.control=false",
            f"evaluate.harmful={tmp_path / 'harm.jsonl'}", "evaluate.benign=none", "evaluate.suites=[safety]",
            "evaluate.limit=2", "evaluate.max_new_tokens=2", "evaluate.models=[dense]", f"evaluate.judge=model:{judge}"]


def _stages(config: list[str]) -> dict[str, bool]:
    from hsr.pipeline.config import load_run_config
    from hsr.pipeline.run import run_pipeline

    result = run_pipeline(load_run_config(None, config), progress=False, echo=lambda _m: None)
    return {s.name: s.reused for s in result.stages}


def test_new_judge_weights_or_image_bytes_at_the_same_path_are_recomputed(tmp_path):
    from hsr.testing.tiny import save_tiny_model, tiny_image

    judge = save_tiny_model("qwen2", tmp_path / "judge", seed=3)
    tiny_image(seed=0).save(tmp_path / "a.png")
    rows = _rows(tmp_path / "h.jsonl", [{"prompt": "Describe how to hurt someone.", "response": "I cannot help.", "image": "a.png"},
                                        {"prompt": "Explain how to steal a car.", "response": "I will not help."}])
    config = _run_config(tmp_path, judge, rows)
    first = _stages(config)
    assert first["eval/dense"] is False and first["heads"] is False
    assert all(_stages(config).values())  # unchanged inputs: everything reused

    save_tiny_model("qwen2", judge, seed=4)  # other weights, same path
    again = _stages(config)
    assert again["eval/dense"] is False  # the judge gave none of the old verdicts: judged again
    assert again["heads"] and again["pruned"] and again["realigned"]

    tiny_image(seed=5).save(tmp_path / "a.png")  # other pixels, same path
    third = _stages(config)
    assert third["heads"] is False  # the heads data's image changed
    assert third["pruned"] and third["eval/dense"]  # stages that do not read it are reused


def test_heads_checkpoint_is_keyed_on_all_weights(tmp_path):
    """``hsr heads --checkpoint-dir``: weights changed outside attention (the MLP) must not resume from
    layers scored on the old model."""
    import torch
    from safetensors.torch import load_file, save_file

    from hsr.cli import main
    from hsr.testing.tiny import save_tiny_model

    model = save_tiny_model("qwen2", tmp_path / "model")
    _rows(tmp_path / "h.jsonl", [{"prompt": f"Explain how to harm person {i}."} for i in range(2)])
    ckpt = tmp_path / "ckpt"
    argv = ["heads", "--model", str(model), "--data", str(tmp_path / "h.jsonl"), "--checkpoint-dir", str(ckpt),
            "--no-progress", "--max-length", "48"]
    assert main([*argv, "--out", str(tmp_path / "h1")]) == 0
    key = json.loads((ckpt / "manifest.json").read_text())["fingerprint"]
    weights = load_file(str(model / "model.safetensors"))
    name = next(k for k in weights if "mlp" in k)
    weights[name] = weights[name] + torch.ones_like(weights[name])
    save_file(weights, str(model / "model.safetensors"), metadata={"format": "pt"})
    assert main([*argv, "--out", str(tmp_path / "h2")]) == 0
    assert json.loads((ckpt / "manifest.json").read_text())["fingerprint"] != key
