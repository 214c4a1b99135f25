"""Every bad input gets one clear line and exit code 2, through the real CLI in a subprocess.

Each case: exit code 2; the last stderr line is ``hsr CMD: error: ...`` (or argparse's ``error:``) and
names the problem; no traceback; nothing is created under the outputs folder; every input file is
byte-identical afterwards. The cases run two at a time (subprocess start-up dominates) before the
parametrized checks read their results.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_cases import error_line, run_all, tree, write

HSR = [sys.executable, "-m", "hsr"]

# (id, argv with {placeholders}, text the error must contain)
CASES: list[tuple[str, list[str], str]] = [
    # ---------------------------------------------------------------- models
    ("model-missing", ["prune", "--model", "{in}/nope", "--out", "{out}/p"], "Model path not found"),
    ("model-no-config", ["prune", "--model", "{in}/empty_dir", "--out", "{out}/p"], "no config.json"),
    ("model-is-file", ["prune", "--model", "{in}/good.jsonl", "--out", "{out}/p"], "is a file"),
    ("model-truncated-gguf", ["prune", "--model", "{in}/truncated.gguf", "--data", "{in}/good.jsonl", "--out", "{out}/p"], "Could not load model"),
    ("model-corrupt-safetensors", ["prune", "--model", "{in}/corrupt", "--data", "{in}/good.jsonl", "--out", "{out}/p"], "Could not load model"),
    ("model-hub-offline", ["heads", "--model", "nobody/no-such-model", "--data", "{in}/good.jsonl", "--out", "{out}/h"], "Could not load model"),
    ("device-cuda-on-cpu", ["prune", "--model", "{in}/model", "--data", "{in}/good.jsonl", "--device", "cuda:0", "--out", "{out}/p"], "CUDA"),
    ("device-bogus", ["evaluate", "--model", "{in}/model", "--device", "bogus", "--out", "{out}/e"], "Unknown device"),
    ("dtype-bogus", ["prune", "--model", "{in}/model", "--data", "{in}/good.jsonl", "--dtype", "float7", "--out", "{out}/p"], "dtype"),
    ("cache-unwritable", ["prune", "--model", "default", "--method", "magnitude", "--out", "{out}/p", "@HSR_CACHE=/proc/hsr-cache"], "HSR_CACHE"),
    ("pruned-other-arch", ["realign", "--dense", "{in}/model", "--pruned", "{in}/llama", "--heads", "{in}/heads.json", "--whole-head", "--out", "{out}/r"], "LlamaForCausalLM"),
    ("pruned-missing", ["realign", "--dense", "{in}/model", "--pruned", "{in}/nope", "--heads", "{in}/heads.json", "--whole-head", "--out", "{out}/r"], "not found"),
    # ---------------------------------------------------------------- data files
    ("data-missing", ["prune", "--model", "{in}/model", "--data", "{in}/nope.jsonl", "--out", "{out}/p"], "not found"),
    ("data-bad-json", ["prune", "--model", "{in}/model", "--data", "{in}/bad_json.jsonl", "--out", "{out}/p"], "line 2: not valid JSON"),
    ("data-no-prompt", ["prune", "--model", "{in}/model", "--data", "{in}/no_prompt.jsonl", "--out", "{out}/p"], "'prompt'"),
    ("data-not-utf8", ["prune", "--model", "{in}/model", "--data", "{in}/latin1.jsonl", "--out", "{out}/p"], "UTF-8"),
    ("data-image-missing", ["prune", "--model", "{in}/model", "--data", "{in}/no_image.jsonl", "--out", "{out}/p"], "image file not found"),
    ("data-empty", ["prune", "--model", "{in}/model", "--data", "{in}/empty.jsonl", "--out", "{out}/p"], "no rows"),
    ("data-response-number", ["prune", "--model", "{in}/model", "--data", "{in}/response_number.jsonl", "--out", "{out}/p"], "'response' must be a string"),
    ("data-row-list", ["prune", "--model", "{in}/model", "--data", "{in}/row_list.jsonl", "--out", "{out}/p"], "expected a JSON object"),
    ("data-builtin-unknown", ["heads", "--model", "{in}/model", "--data", "builtin:nope", "--out", "{out}/h"], "nope"),
    ("vlguard-missing", ["prune", "--model", "{in}/model", "--data", "vlguard:{in}/nope:unsafes", "--out", "{out}/p"], "annotation file not found"),
    ("vlguard-bad-split", ["prune", "--model", "{in}/model", "--data", "vlguard:{in}/vlguard:nosplit", "--out", "{out}/p"], "Unknown VLGuard split"),
    ("vlguard-instruction-number", ["prune", "--model", "{in}/model", "--data", "vlguard:{in}/vlguard:unsafes", "--out", "{out}/p"], "must be a non-empty string"),
    ("vlguard-not-utf8", ["prune", "--model", "{in}/model", "--data", "vlguard:{in}/vlguard_latin1:unsafes", "--out", "{out}/p"], "UTF-8"),
    ("eval-harmful-missing", ["evaluate", "--model", "{in}/model", "--harmful", "{in}/nope.jsonl", "--out", "{out}/e"], "not found"),
    ("eval-ppl-missing", ["evaluate", "--model", "{in}/model", "--ppl-text", "{in}/nope.txt", "--out", "{out}/e"], "not found"),
    ("eval-ppl-not-utf8", ["evaluate", "--model", "{in}/model", "--ppl-text", "{in}/latin1.jsonl", "--out", "{out}/e"], "UTF-8"),
    ("eval-mcq-bad", ["evaluate", "--model", "{in}/model", "--mcq", "{in}/good.jsonl", "--out", "{out}/e"], "'question'"),
    ("realign-utility-missing", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--utility-data", "{in}/nope.jsonl", "--out", "{out}/r"], "not found"),
    ("realign-safety-bad", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--safety-data", "{in}/bad_json.jsonl", "--out", "{out}/r"], "not valid JSON"),
    ("realign-scores-missing", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--utility-scores", "{in}/nope.safetensors", "--out", "{out}/r"], "not found"),
    ("realign-scores-corrupt", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--utility-scores", "{in}/good.jsonl", "--out", "{out}/r"], "not a readable safetensors"),
    # ---------------------------------------------------------------- numeric options
    ("sparsity-too-big", ["prune", "--model", "{in}/model", "--sparsity", "1.5", "--out", "{out}/p"], "Sparsity ratio"),
    ("sparsity-bad-nm", ["prune", "--model", "{in}/model", "--sparsity", "5:4", "--out", "{out}/p"], "5:4"),
    ("sparsity-text", ["prune", "--model", "{in}/model", "--sparsity", "half", "--out", "{out}/p"], "half"),
    ("block-size-zero", ["prune", "--model", "{in}/model", "--method", "sparsegpt", "--block-size", "0", "--out", "{out}/p"], "--block-size must be at least 1"),
    ("block-size-negative", ["prune", "--model", "{in}/model", "--method", "sparsegpt", "--block-size", "-1", "--out", "{out}/p"], "--block-size must be at least 1"),
    ("method-unknown", ["prune", "--model", "{in}/model", "--method", "snip2", "--out", "{out}/p"], "invalid choice"),
    ("max-length-zero", ["prune", "--model", "{in}/model", "--max-length", "0", "--out", "{out}/p"], "--max-length"),
    ("n-samples-zero", ["prune", "--model", "{in}/model", "--data", "{in}/good.jsonl", "--n-samples", "0", "--out", "{out}/p"], "--n-samples"),
    ("heads-limit-zero", ["heads", "--model", "{in}/model", "--limit", "0", "--out", "{out}/h"], "--limit"),
    ("heads-rank-zero", ["heads", "--model", "{in}/model", "--score", "gships", "--rank", "0", "--out", "{out}/h"], "rank"),
    ("heads-sahara-negative", ["heads", "--model", "{in}/model", "--sahara-steps", "-1", "--out", "{out}/h"], "sahara"),
    ("heads-score-unknown", ["heads", "--model", "{in}/model", "--score", "vibes", "--out", "{out}/h"], "invalid choice"),
    ("heads-batch-zero", ["heads", "--model", "{in}/model", "--batch-heads", "0", "--out", "{out}/h"], "--batch-heads"),
    ("realign-p-above-max", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--p", "0.9", "--out", "{out}/r"], "max_p"),
    ("realign-q-zero", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--q", "0", "--out", "{out}/r"], "q <= 1"),
    ("realign-top-h-zero", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--top-h", "0", "--out", "{out}/r"], "--top-h"),
    ("realign-top-h-too-many", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--whole-head", "--top-h", "99", "--out", "{out}/r"], "exceeds"),
    ("realign-budget-negative", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--budget", "-5", "--out", "{out}/r"], "budget"),
    ("realign-nm-without-preserve", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--nm", "2:4", "--out", "{out}/r"], "--preserve-nm"),
    ("realign-nm-not-nm", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads.json", "--nm", "0.5", "--preserve-nm", "--out", "{out}/r"], "N:M"),
    ("eval-max-new-tokens-zero", ["evaluate", "--model", "{in}/model", "--max-new-tokens", "0", "--out", "{out}/e"], "--max-new-tokens"),
    ("eval-batch-zero", ["evaluate", "--model", "{in}/model", "--batch-size", "0", "--out", "{out}/e"], "--batch-size"),
    ("eval-limit-negative", ["evaluate", "--model", "{in}/model", "--limit", "-1", "--out", "{out}/e"], "--limit"),
    ("eval-suite-unknown", ["evaluate", "--model", "{in}/model", "--suite", "vibes", "--out", "{out}/e"], "--suite"),
    ("eval-judge-unknown", ["evaluate", "--model", "{in}/model", "--judge", "oracle", "--out", "{out}/e"], "Unknown judge"),
    ("eval-judge-list-unknown", ["evaluate", "--model", "{in}/model", "--judge", "keyword:nolist", "--out", "{out}/e"], "nolist"),
    ("eval-judge-model-missing", ["evaluate", "--model", "{in}/model", "--judge", "model:./no-judge", "--out", "{out}/e"], "not found"),
    ("align-epochs-zero", ["align", "--model", "{in}/model", "--epochs", "0", "--out", "{out}/a"], "epochs"),
    ("align-lr-huge", ["align", "--model", "{in}/model", "--lr", "5", "--out", "{out}/a"], "lr"),
    ("align-harmful-missing", ["align", "--model", "{in}/model", "--harmful", "{in}/nope.jsonl", "--out", "{out}/a"], "not found"),
    # ---------------------------------------------------------------- files between stages
    ("heads-file-missing", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/nope.json", "--out", "{out}/r"], "not found"),
    ("heads-file-not-json", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/good.jsonl", "--out", "{out}/r"], "cannot read heads JSON"),
    ("heads-file-other-model", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads_30x9.json", "--whole-head", "--out", "{out}/r"], "30 layers x 9 heads"),
    ("heads-file-float-layer", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads_float.json", "--out", "{out}/r"], "integer 'layer'"),
    ("heads-file-duplicate", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/heads_dup.json", "--out", "{out}/r"], "listed twice"),
    ("heads-file-not-utf8", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/latin1.jsonl", "--out", "{out}/r"], "UTF-8"),
    ("report-not-a-run", ["report", "{in}/empty_dir", "--out", "{out}/rep"], "neither"),
    ("report-bad-metrics", ["report", "{in}/bad_eval", "--out", "{out}/rep"], "cannot read metrics"),
    ("report-bad-heads", ["report", "{in}/good_eval", "--heads", "{in}/heads_dup.json", "--out", "{out}/rep"], "listed twice"),
    # ---------------------------------------------------------------- outputs
    ("out-exists", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "{in}/empty_dir"], "already exists"),
    ("out-is-model", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "{in}/model", "--overwrite"], "overlaps the input"),
    ("out-is-model-parent", ["evaluate", "--model", "{in}/model", "--out", "{in}", "--overwrite"], "overlaps the input"),
    ("out-inside-model", ["heads", "--model", "{in}/model", "--out", "{in}/model/heads"], "overlaps the input"),
    ("out-is-data-dir", ["prune", "--model", "{in}/model", "--data", "{in}/datadir/rows.jsonl", "--out", "{in}/datadir", "--overwrite"], "overlaps the input"),
    ("out-below-file", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "{in}/good.jsonl/p"], "is a file"),
    ("out-unwritable", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "/proc/hsr-out"], "cannot write"),
    ("realign-out-is-heads-dir", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--heads", "{in}/headsdir/heads.json", "--out", "{in}/headsdir", "--overwrite"], "overlaps the input"),
    ("run-out-is-model", ["run", "--model", "{in}/model", "--out", "{in}/model"], "overlaps the input"),
    ("run-out-foreign", ["run", "--model", "{in}/model", "--out", "{in}/datadir"], "did not write"),
    # ---------------------------------------------------------------- run configs
    ("config-missing", ["run", "{in}/nope.yaml", "--out", "{out}/run"], "does not exist"),
    ("config-bad-yaml", ["run", "{in}/bad.yaml", "--out", "{out}/run"], "not valid YAML"),
    ("config-not-utf8", ["run", "{in}/latin1.yaml", "--out", "{out}/run"], "UTF-8"),
    ("config-unknown-key", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "realign.topp_h=3"], "realign.topp_h"),
    ("config-seed-text", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "seed=abc"], "'seed'"),
    ("config-control-quoted-no", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", 'realign.control="no"'], "true or false"),
    ("config-max-new-tokens-text", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "evaluate.max_new_tokens=lots"], "max_new_tokens"),
    ("config-models-unknown", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "evaluate.models=[dense, bogus]"], "evaluate.models"),
    ("config-engine-unknown", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "heads.engine=turbo"], "engine"),
    ("config-sparsity-bad", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "prune.sparsity=9:4"], "9:4"),
    ("config-device-bogus", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "device=bogus"], "Unknown device"),
    ("config-eval-data-missing", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "evaluate.harmful={in}/nope.jsonl"], "not found"),
    ("config-heads-data-bad", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "heads.data={in}/bad_json.jsonl"], "not valid JSON"),
    ("config-budget-negative", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "realign.budget=-1"], "budget"),
    ("config-judge-unknown", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "evaluate.judge=oracle"], "Unknown judge"),
    ("config-model-missing", ["run", "--model", "{in}/nope", "--out", "{out}/run"], "not found"),
    ("sweep-sparsity-bad", ["sweep", "--model", "{in}/model", "--out", "{out}/run", "--sparsities", "0.5,abc"], "abc"),
    ("sweep-method-unknown", ["sweep", "--model", "{in}/model", "--out", "{out}/run", "--sparsities", "0.5", "--methods", "snip2"], "snip2"),
]


def _make_inputs(root: Path) -> None:
    from hsr.testing.tiny import save_tiny_model

    save_tiny_model("qwen2", root / "model")
    save_tiny_model("llama", root / "llama")
    corrupt = root / "corrupt"
    save_tiny_model("qwen2", corrupt)
    data = (corrupt / "model.safetensors").read_bytes()
    (corrupt / "model.safetensors").write_bytes(data[: len(data) // 2])
    (root / "empty_dir").mkdir()
    good = [{"prompt": f"Tell me about item {i}.", "response": f"Item {i} is a red box."} for i in range(4)]
    write(root / "good.jsonl", "".join(json.dumps(r) + "\n" for r in good))
    write(root / "datadir" / "rows.jsonl", "".join(json.dumps(r) + "\n" for r in good))
    write(root / "bad_json.jsonl", json.dumps(good[0]) + "\n{not json\n")
    write(root / "no_prompt.jsonl", json.dumps({"response": "x"}) + "\n")
    write(root / "latin1.jsonl", b'{"prompt": "caf\xe9"}\n')
    write(root / "no_image.jsonl", json.dumps({"prompt": "What is this?", "image": "missing.png"}) + "\n")
    write(root / "empty.jsonl", "\n")
    write(root / "response_number.jsonl", json.dumps({"prompt": "p", "response": 3}) + "\n")
    write(root / "row_list.jsonl", "[1, 2]\n")
    write(root / "vlguard" / "train.json", json.dumps([{"image": "a.png", "safe": False, "instr-resp": [{"instruction": 5}]}]))
    write(root / "vlguard" / "a.png", b"not read: the instruction fails first")
    write(root / "vlguard_latin1" / "train.json", b'[{"image": "caf\xe9.png"}]')
    header = {"score": "ships", "num_layers": 2, "num_heads": 4}
    rows = [{"layer": l, "head": h, "rank": 1 + 4 * l + h, "score": 8.0 - 4 * l - h} for l in range(2) for h in range(4)]
    write(root / "heads.json", json.dumps({**header, "heads": rows}))
    write(root / "headsdir" / "heads.json", json.dumps({**header, "heads": rows}))
    write(root / "heads_30x9.json", json.dumps({**header, "num_layers": 30, "num_heads": 9, "heads": rows}))
    write(root / "heads_float.json", json.dumps({**header, "heads": [{"layer": 1.7, "head": 0, "rank": 1}]}))
    write(root / "heads_dup.json", json.dumps({**header, "heads": [rows[0], {**rows[0], "rank": 2}]}))
    write(root / "bad_eval" / "metrics.json", "{not json")
    metrics = {"model": "m", "asr": {"value": 0.5, "ci_low": 0.1, "ci_high": 0.9, "n": 4, "k": 2}}
    write(root / "good_eval" / "metrics.json", json.dumps(metrics))
    write(root / "bad.yaml", "model: [unclosed\n")
    write(root / "latin1.yaml", b"model: caf\xe9\n")
    from hsr.loading import smollm_gguf_path

    with open(smollm_gguf_path(), "rb") as fh:
        write(root / "truncated.gguf", fh.read(2_000_000))


def _run_case(case: tuple[str, list[str], str], root: Path) -> dict:
    name, argv, _ = case
    ins, outs = root / "inputs", root / "outs" / name
    outs.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HSR_CACHE": str(root / "cache"), "TQDM_DISABLE": "1"}
    args = []
    for a in argv:
        if a.startswith("@"):
            key, value = a[1:].split("=", 1)
            env[key] = value
        else:
            args.append(a.replace("{in}", str(ins)).replace("{out}", str(outs)))
    proc = subprocess.run([*HSR, *args], capture_output=True, text=True, env=env, cwd=root, timeout=300)
    return {"rc": proc.returncode, "err": proc.stderr, "outs": sorted(p.name for p in outs.rglob("*"))}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_inputs")
    _make_inputs(root / "inputs")
    before = tree(root / "inputs")
    done = run_all(CASES, lambda c: _run_case(c, root))
    return done, before, tree(root / "inputs")


def test_there_are_enough_distinct_cases():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names)) and len(names) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_gives_one_clear_line_and_touches_nothing(results, case):
    done, _, _ = results
    name, argv, expected = case
    r = done[name]
    last = error_line(r)
    assert "error:" in last and expected in last, last
    assert r["outs"] == [], r["outs"]


def test_inputs_are_byte_identical_after_all_cases(results):
    _, before, after = results
    assert after == before
