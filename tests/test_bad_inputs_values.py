"""Values that are nonsense are refused, and hostile inputs give one line, never a traceback or a hang.

Same harness as tests/test_bad_inputs.py: the real CLI in a subprocess, tiny models; each case exits 2
with ``hsr CMD: error: ...`` naming the problem as its last stderr line, no traceback, nothing under the
outputs folder, every input byte-identical afterwards. Below the CLI cases, the checks behind them are
tested one by one (pure functions), plus SIGTERM during a save and the default model's cache digest.
"""

from __future__ import annotations

import errno
import json
import math
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from cli_cases import error_line, run_all, tree, write

HSR = [sys.executable, "-m", "hsr"]
REALIGN = ["realign", "--dense", "{in}/model", "--pruned", "{in}/model", "--whole-head", "--out", "{out}/r"]

# (id, argv with {placeholders}, text the error must contain)
CASES: list[tuple[str, list[str], str]] = [
    # ---------------------------------------------------------------- heads.json values
    ("heads-score-nan", [*REALIGN, "--heads", "{in}/heads_nan.json"], "score must be a finite number"),
    ("heads-score-inf", [*REALIGN, "--heads", "{in}/heads_inf.json"], "got inf"),
    ("heads-score-text", [*REALIGN, "--heads", "{in}/heads_text.json"], "'high'"),
    ("heads-ranks-equal", [*REALIGN, "--heads", "{in}/heads_same_rank.json"], "both have rank 1"),
    ("report-heads-nan", ["report", "{in}/good_eval", "--heads", "{in}/heads_nan.json", "--out", "{out}/rep"], "finite"),
    ("report-heads-no-score", ["report", "{in}/good_eval", "--heads", "{in}/heads_no_score.json", "--out", "{out}/rep"], "no 'score'"),
    ("heads-scores-all-equal", [*REALIGN, "--heads", "{in}/heads_flat.json"], "all 8 heads have the same score (0.0)"),
    ("report-heads-all-equal", ["report", "{in}/good_eval", "--heads", "{in}/heads_flat.json", "--out", "{out}/rep"], "arbitrary"),
    ("heads-surrogate", [*REALIGN, "--heads", "{in}/heads_surrogate.json"], "surrogate"),
    # ---------------------------------------------------------------- metrics.json values
    ("metrics-k-above-n", ["report", "{in}/eval_k_above_n", "--out", "{out}/rep"], "k=10 exceeds n=2"),
    ("metrics-negative-n", ["report", "{in}/eval_negative", "--out", "{out}/rep"], "non-negative integers"),
    ("metrics-inverted-interval", ["report", "{in}/eval_inverted", "--out", "{out}/rep"], "does not contain"),
    ("metrics-nan", ["report", "{in}/eval_nan", "--out", "{out}/rep"], "between 0 and 1, got nan"),
    ("metrics-value-not-k-over-n", ["report", "{in}/eval_not_ratio", "--out", "{out}/rep"], "is not k/n"),
    ("metrics-perplexity-negative", ["report", "{in}/eval_ppl", "--out", "{out}/rep"], "perplexity"),
    ("metrics-surrogate", ["report", "{in}/eval_surrogate", "--out", "{out}/rep"], "surrogate"),
    # ---------------------------------------------------------------- models
    ("model-nan-weight", ["prune", "--model", "{in}/nan_model", "--method", "magnitude", "--out", "{out}/p"], "model.layers.1.mlp.up_proj.weight"),
    ("model-nan-weight-offloaded", ["prune", "--model", "{in}/nan_model", "--method", "magnitude", "--max-memory", "cpu=100000",
                                    "--offload-folder", "{out}/../offload", "--out", "{out}/p"], "model.layers.1.mlp.up_proj.weight"),
    ("model-no-tokenizer", ["prune", "--model", "{in}/no_tokenizer", "--method", "magnitude", "--out", "{out}/p"], "no usable tokenizer"),
    ("model-pickle-code", ["prune", "--model", "{in}/evil", "--method", "magnitude", "--out", "{out}/p"], "never runs"),
    ("realign-unrelated-pair", ["realign", "--dense", "{in}/model", "--pruned", "{in}/model_b", "--heads", "{in}/heads.json", "--whole-head", "--top-h", "2", "--out", "{out}/r"], "not made from this dense model"),
    # ---------------------------------------------------------------- run configs
    ("config-duplicate-key", ["run", "{in}/dup.yaml", "--out", "{out}/run"], "line 3: key 'sparsity' is given twice (first on line 2)"),
    ("config-anchor", ["run", "{in}/anchor.yaml", "--out", "{out}/run"], "anchors and aliases"),
    ("config-alias-bomb", ["run", "{in}/bomb.yaml", "--out", "{out}/run"], "anchors and aliases"),
    ("config-set-alias", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "evaluate.models=[&a dense, *a]"], "anchors"),
    ("config-surrogate", ["run", "{in}/surrogate.yaml", "--out", "{out}/run"], "surrogate"),
    ("config-float-nan", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "realign.p=.nan"], "finite"),
    ("config-seed-huge", ["run", "--model", "{in}/model", "--out", "{out}/run", "--set", "seed=99999999999999999999999"], "too large"),
    ("sweep-duplicate-sparsity", ["sweep", "--model", "{in}/model", "--out", "{out}/run", "--sparsities", "0.5,0.50"], "0.5 twice"),
    ("sweep-duplicate-method", ["sweep", "--model", "{in}/model", "--out", "{out}/run", "--sparsities", "0.5", "--methods", "wanda,wanda"], "wanda twice"),
    # ---------------------------------------------------------------- options
    ("weight-decay-nan", ["align", "--model", "{in}/model", "--weight-decay", "nan", "--out", "{out}/a"], "--weight-decay must be a finite number"),
    ("lr-inf", ["align", "--model", "{in}/model", "--lr", "inf", "--out", "{out}/a"], "--lr must be a finite number"),
    ("percdamp-nan", ["prune", "--model", "{in}/model", "--percdamp", "nan", "--out", "{out}/p"], "--percdamp"),
    ("realign-q-nan", [*REALIGN, "--heads", "{in}/heads.json", "--q", "NaN"], "--q"),
    ("seed-beyond-64-bits", ["prune", "--model", "{in}/model", "--method", "magnitude", "--seed", "99999999999999999999999", "--out", "{out}/p"], "--seed is too large"),
    ("seed-beyond-32-bits", ["prune", "--model", "{in}/model", "--method", "magnitude", "--seed", "4294967296", "--out", "{out}/p"], "--seed must be at most"),
    ("max-length-huge", ["prune", "--model", "{in}/model", "--max-length", "1e30", "--out", "{out}/p"], "--max-length"),
    ("max-new-tokens-beyond-context", ["evaluate", "--model", "{in}/model", "--max-new-tokens", "100000", "--suite", "safety", "--judge", "refusal", "--out", "{out}/e"], "1,024 positions"),
    # ---------------------------------------------------------------- data and paths
    ("data-surrogate", ["prune", "--model", "{in}/model", "--data", "{in}/surrogate.jsonl", "--out", "{out}/p"], "line 2: prompt holds a lone UTF-16 surrogate"),
    ("out-symlink-loop", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "{in}/loop/p"], "points back at itself"),
    ("stdout-full", ["run", "--print-config", "@STDOUT=/dev/full"], "No space left on device"),
    # a disk that fills while the weights are written (a file size limit gives EFBIG, as a full disk gives ENOSPC)
    ("disk-full-saving", ["prune", "--model", "{in}/model", "--method", "magnitude", "--out", "{out}/p", "@FSIZE=100000"],
     "File too large"),
]

#: Runs ``python -m hsr ARGS`` with RLIMIT_FSIZE set to its first argument (Python ignores SIGXFSZ, so a
#: write past the limit fails with EFBIG, like a full disk), without a preexec_fn in a threaded parent.
_FILE_SIZE_LIMITED = ("import os, resource, sys; n = int(sys.argv.pop(1)); resource.setrlimit(resource.RLIMIT_FSIZE, (n, n)); "
                      "os.execv(sys.executable, [sys.executable, '-m', 'hsr', *sys.argv[1:]])")


def _tree(folder: Path) -> dict[str, str]:
    return tree(folder, lambda p: p.is_file() and not p.is_symlink())


class _RunsCode:
    def __reduce__(self):
        return (os.system, ("touch PWNED",))


def _make_inputs(root: Path) -> None:
    from safetensors.torch import load_file, save_file

    from hsr.testing.tiny import save_tiny_model

    save_tiny_model("qwen2", root / "model")
    save_tiny_model("qwen2", root / "model_b", seed=1)
    shutil.copytree(root / "model", root / "nan_model")
    weights = load_file(root / "nan_model" / "model.safetensors")
    weights["model.layers.1.mlp.up_proj.weight"][3, 5] = math.nan
    save_file(weights, root / "nan_model" / "model.safetensors", metadata={"format": "pt"})
    shutil.copytree(root / "model", root / "no_tokenizer", ignore=shutil.ignore_patterns("tokenizer*", "vocab*", "merges*", "special_tokens*", "chat_template*"))
    shutil.copytree(root / "model", root / "evil", ignore=shutil.ignore_patterns("model.safetensors"))
    (root / "evil" / "pytorch_model.bin").write_bytes(pickle.dumps(_RunsCode()))
    header = {"score": "ships", "num_layers": 2, "num_heads": 4}
    rows = [{"layer": l, "head": h, "rank": 1 + 4 * l + h, "score": 8.0 - 4 * l - h} for l in range(2) for h in range(4)]
    write(root / "heads.json", json.dumps({**header, "heads": rows}))
    for name, score in (("nan", math.nan), ("inf", math.inf), ("text", "high")):
        write(root / f"heads_{name}.json", json.dumps({**header, "heads": [rows[0], {**rows[1], "score": score}, *rows[2:]]}))
    write(root / "heads_flat.json", json.dumps({**header, "heads": [{**r, "score": 0.0} for r in rows]}))
    write(root / "heads_same_rank.json", json.dumps({**header, "heads": [{**r, "rank": 1} for r in rows]}))
    write(root / "heads_no_score.json", json.dumps({**header, "heads": [{k: v for k, v in r.items() if k != "score"} for r in rows]}))
    write(root / "heads_surrogate.json", '{"score": "ships", "model": "x\\ud800", "num_layers": 2, "num_heads": 4, "heads": '
           + json.dumps(rows) + "}")
    good = {"value": 0.5, "ci_low": 0.2, "ci_high": 0.8, "n": 4, "k": 2}
    write(root / "good_eval" / "metrics.json", json.dumps({"model": "m", "asr": good}))
    bad_rates = {
        "eval_k_above_n": {**good, "value": 5.0, "ci_high": 5.0, "k": 10, "n": 2},
        "eval_negative": {**good, "n": -1},
        "eval_inverted": {**good, "ci_low": 0.9, "ci_high": 0.1},
        "eval_nan": {**good, "value": math.nan},
        "eval_not_ratio": {**good, "k": 1},
    }
    for folder, rate in bad_rates.items():
        write(root / folder / "metrics.json", json.dumps({"model": "m", "asr": rate}))
    write(root / "eval_ppl" / "metrics.json", json.dumps({"model": "m", "asr": good, "perplexity": -3}))
    write(root / "eval_surrogate" / "metrics.json", '{"model": "m\\udfff", "asr": ' + json.dumps(good) + "}")
    write(root / "dup.yaml", "prune:\n  sparsity: 0.5\n  sparsity: 0.6\n")
    write(root / "anchor.yaml", "prune: &p\n  sparsity: 0.5\nheads: *p\n")
    laughs = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    laughs += [f"{c}: &{c} [*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p},*{p}]" for p, c in zip("abcdefgh", "bcdefghi")]
    write(root / "bomb.yaml", "\n".join(laughs) + "\nmodel: *i\n")
    write(root / "surrogate.yaml", 'model: "x\\ud800"\n')
    write(root / "surrogate.jsonl", json.dumps({"prompt": "fine"}) + '\n{"prompt": "bad \\ud800 text"}\n')
    (root / "loop").symlink_to("loop")


def _run_case(case: tuple[str, list[str], str], root: Path) -> dict:
    name, argv, _ = case
    ins, outs = root / "inputs", root / "outs" / name
    outs.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HSR_CACHE": str(root / "cache"), "TQDM_DISABLE": "1"}
    args, stdout, command = [], subprocess.PIPE, HSR
    for a in argv:
        if a.startswith("@STDOUT="):
            stdout = open(a.split("=", 1)[1], "w")  # noqa: SIM115 (closed below)
        elif a.startswith("@FSIZE="):
            command = [sys.executable, "-c", _FILE_SIZE_LIMITED, a.split("=", 1)[1]]
        else:
            args.append(a.replace("{in}", str(ins)).replace("{out}", str(outs)))
    start = time.monotonic()
    try:
        proc = subprocess.run([*command, *args], stdout=stdout, stderr=subprocess.PIPE, text=True, env=env, cwd=outs, timeout=300)
    finally:
        if stdout is not subprocess.PIPE:
            stdout.close()
    return {"rc": proc.returncode, "err": proc.stderr, "seconds": time.monotonic() - start,
            "outs": sorted(p.name for p in outs.rglob("*"))}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad_values")
    _make_inputs(root / "inputs")
    before = _tree(root / "inputs")
    done = run_all(CASES, lambda c: _run_case(c, root))
    return done, before, _tree(root / "inputs")


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_nonsense_value_gives_one_clear_line_and_touches_nothing(results, case):
    done, _, _ = results
    name, argv, expected = case
    r = done[name]
    last = error_line(r)
    assert "error:" in last and expected in last, last
    assert len(last) < 1000, last
    assert r["outs"] == [], r["outs"]


def test_inputs_are_byte_identical_and_pickle_never_ran(results):
    done, before, after = results
    assert after == before
    assert done["model-pickle-code"]["outs"] == []  # the pickle would create PWNED in the case's cwd, its outs folder


def test_alias_bomb_is_refused_at_once(results):
    done, _, _ = results
    assert done["config-alias-bomb"]["seconds"] < 60  # 40 s and 3.6 GB before it was refused at parse time


# ------------------------------------------------------------------------------------------ SIGTERM
_BLOCKING_SAVE = textwrap.dedent(
    """
    import os, sys, time
    import hsr.pruning.prune as prune

    real = prune.save_masks
    def blocked(masks, path):  # called inside the temporary output folder, after the weights are written
        real(masks, path)
        os.write(1, b"saving\\n")
        time.sleep(300)
    prune.save_masks = blocked
    from hsr.cli import entry
    sys.argv = ["hsr", *sys.argv[1:]]
    entry()
    """
)


def test_sigterm_during_save_removes_the_temporary_folder(tmp_path):
    from hsr.testing.tiny import save_tiny_model

    save_tiny_model("qwen2", tmp_path / "model")
    out = tmp_path / "outs" / "p"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TQDM_DISABLE": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-c", _BLOCKING_SAVE, "prune", "--model", str(tmp_path / "model"), "--method", "magnitude",
         "--no-progress", "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
    )
    try:
        assert proc.stdout.readline() == "saving\n"  # blocks until the save is under way: no timing guess
        temps = [p.name for p in out.parent.iterdir()]
        assert temps and all(".tmp-" in n for n in temps), temps  # the half-written folder exists now
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err and "terminated" in err.strip().splitlines()[-1], err
    assert list(out.parent.iterdir()) == []


def test_terminated_is_raised_once_and_handlers_come_back():
    from hsr.termination import Terminated, terminate_cleanly

    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info:
        with terminate_cleanly():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler runs at once; never reached
    assert info.value.exit_code == 143
    assert signal.getsignal(signal.SIGTERM) == before


# ------------------------------------------------------------------------------------------ OSError safety net
def test_unexpected_oserror_becomes_one_line(monkeypatch, capsys):
    import hsr.commands.report as report
    from hsr import cli

    def full_disk(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/out/.p.tmp-1/model.safetensors")

    monkeypatch.setattr(report, "run", full_disk)
    assert cli.main(["report", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hsr report: error: No space left on device: /data/out/.p.tmp-1/model.safetensors")


def test_verbose_mode_keeps_the_traceback_of_an_unexpected_oserror(monkeypatch, capsys):
    import hsr.commands.report as report
    from hsr import cli

    def loop(args):
        raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), "/a/b")

    monkeypatch.setattr(report, "run", loop)
    assert cli.main(["-v", "report", "x", "--out", "y"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "points back at itself" in err.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "code, expected",
    [(errno.ENOSPC, "free some space"), (errno.ELOOP, "points back at itself"), (errno.EACCES, "permissions"),
     (errno.EIO, "Input/output error: /p.")],
)
def test_describe_os_error(code, expected):
    from hsr.errors import describe_os_error

    text = describe_os_error(OSError(code, os.strerror(code), "/p"))
    assert expected in text and "/p" in text and "\n" not in text


@pytest.mark.parametrize(
    "message, code",
    [("Error while serializing: I/O error: No space left on device (os error 28)", errno.ENOSPC),
     ("Error while serializing: I/O error: File too large (os error 27)", errno.EFBIG),
     ("Error while serializing: I/O error: broken pipe", errno.EIO),
     ("Tensor a is not contiguous", None)],
)
def test_safetensors_save_errors_become_the_os_error_they_hide(message, code, tmp_path):
    from safetensors import SafetensorError

    from hsr.io import atomic_output_dir

    with pytest.raises(OSError if code else SafetensorError) as info:
        with atomic_output_dir(tmp_path / "out"):
            raise SafetensorError(message)
    if code:
        assert info.value.errno == code and info.value.filename == str(tmp_path / "out")
    assert list(tmp_path.iterdir()) == []


def test_atomic_output_dir_removes_its_temporary_folder_when_a_write_fails(tmp_path):
    from hsr.io import atomic_output_dir

    with pytest.raises(OSError):
        with atomic_output_dir(tmp_path / "out") as tmp:
            (tmp / "big.bin").write_bytes(b"x" * 1000)
            raise OSError(errno.ENOSPC, "No space left on device", str(tmp / "big.bin"))
    assert list(tmp_path.iterdir()) == []


def test_write_json_leaves_no_temporary_file_when_the_write_fails(tmp_path, monkeypatch):
    from hsr import io

    def full(self, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(Path, "write_text", full)
    with pytest.raises(OSError):
        io.write_json(tmp_path / "x.json", {"a": 1})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ pure checks
def test_every_float_option_refuses_nan_and_infinity():
    from hsr.errors import ConfigError
    from hsr.options import plain_value, specs
    from hsr.pipeline.sections import layout

    floats = [(cls, s) for parts in layout().values() for cls, _ in parts for s in specs(cls) if s.kind is float]
    assert len(floats) >= 5
    for cls, spec in floats:
        for text in ("nan", "inf", "-inf", "1e999"):
            with pytest.raises(ConfigError, match="finite"):
                plain_value(spec, text, spec.name)
        with pytest.raises(ConfigError, match="finite"):
            plain_value(spec, math.nan, spec.name)


def test_check_declared_refuses_nan_built_in_python():
    from hsr.align import AlignConfig
    from hsr.errors import ConfigError
    from hsr.options import check_declared

    with pytest.raises(ConfigError, match="weight_decay must be a finite number"):
        check_declared(AlignConfig(weight_decay=math.nan))


def test_every_int_option_refuses_values_beyond_64_bits():
    from hsr.errors import ConfigError
    from hsr.options import plain_value, specs
    from hsr.pipeline.sections import layout

    ints = [s for parts in layout().values() for cls, _ in parts for s in specs(cls) if s.kind is int]
    for spec in ints:
        with pytest.raises(ConfigError, match="too large"):
            plain_value(spec, 2**64, spec.name)


def test_every_seed_is_bounded_to_32_bits():
    from hsr.options import SEED_LIMIT, specs
    from hsr.pipeline.sections import layout

    seeds = [s for parts in layout().values() for cls, _ in parts for s in specs(cls) if s.name == "seed"]
    assert seeds and all(s.minimum == 0 and s.maximum == SEED_LIMIT for s in seeds)


@pytest.mark.parametrize(
    "rate, expected",
    [
        ({"value": 0.5, "ci_low": 0.2, "ci_high": 0.8, "k": 2, "n": 4}, None),
        ({"value": 1.0, "ci_low": 0.4, "ci_high": 0.9999999999999999, "k": 4, "n": 4}, None),  # Wilson rounding
        ({"value": 5.0, "ci_low": 0.2, "ci_high": 5.0, "k": 10, "n": 2}, "k=10 exceeds n=2"),
        ({"value": 5.0, "ci_low": 0.2, "ci_high": 5.0}, "between 0 and 1"),
        ({"value": 0.5, "ci_low": 0.2, "ci_high": 0.8, "k": 3, "n": 2}, "exceeds"),
        ({"value": 0.5, "ci_low": 0.2, "ci_high": 0.8, "k": 2, "n": 4.0}, "integers"),
        ({"value": 0.5, "ci_low": 0.2, "ci_high": 0.8, "k": True, "n": 4}, "integers"),
        ({"value": 0.5, "ci_low": 0.6, "ci_high": 0.8}, "does not contain"),
        ({"value": "0.5", "ci_low": 0.2, "ci_high": 0.8}, "between 0 and 1"),
        ([0.5], "must be an object"),
    ],
)
def test_check_rate(rate, expected):
    from hsr.errors import HsrError
    from hsr.values import check_rate

    if expected is None:
        check_rate(rate, "asr", HsrError)
    else:
        with pytest.raises(HsrError, match=expected):
            check_rate(rate, "asr", HsrError)


def test_shown_bounds_huge_and_nested_values():
    from hsr.values import shown

    nested: list = ["lol"] * 9
    for _ in range(8):
        nested = [nested] * 9  # 9**9 strings if expanded
    start = time.monotonic()
    assert len(shown(nested)) <= 80 and len(shown("x" * 10**7)) <= 80
    assert time.monotonic() - start < 1
    assert shown("short") == "'short'"


def test_first_surrogate_names_where():
    from hsr.values import first_surrogate

    assert first_surrogate({"a": [{"b": "ok"}, {"c": "x\ud800"}]}) == "a[1].c"
    assert first_surrogate({"a": ["fine", 1, None]}) is None


def test_duplicates():
    from hsr.values import duplicates

    assert duplicates(["0.5", "0.6", "0.5", "0.5"]) == ["0.5"]


def test_duplicate_key_and_alias_in_yaml():
    from hsr.yaml_config import YamlRefused, load_yaml

    with pytest.raises(YamlRefused, match="line 4: key 'b' is given twice"):
        load_yaml("a:\n  b: 1\n  c: 2\n  b: 3\n")
    assert load_yaml("a:\n  b: 1\nc:\n  b: 3\n") == {"a": {"b": 1}, "c": {"b": 3}}  # same key, other mappings
    with pytest.raises(YamlRefused, match="line 2"):
        load_yaml("a: 1\nb: &x 2\n")


def test_heads_ranking_refuses_nonfinite_scores():
    from hsr.heads import HeadScoreConfig
    from hsr.heads.results import HeadScoreError, HeadScores

    scores = torch.ones(2, 3)
    HeadScores(scores, HeadScoreConfig(), 3, 4).check_finite()
    scores[1, 2] = math.nan
    with pytest.raises(HeadScoreError, match="layer 1, head 2"):
        HeadScores(scores, HeadScoreConfig(), 3, 4).check_finite()


def test_heads_file_with_a_few_tied_scores_is_read_but_all_equal_is_refused(tmp_path):
    from hsr.heads import read_heads
    from hsr.heads.results import HeadsFileError

    def heads(scores):
        rows = [{"layer": 0, "head": h, "rank": h + 1, "score": s} for h, s in enumerate(scores)]
        return write(tmp_path / "heads.json", json.dumps({"score": "ships", "num_layers": 1, "num_heads": len(rows), "heads": rows}))

    assert read_heads(heads([3.0, 2.0, 2.0, 1.0])).ranking == [(0, 0), (0, 1), (0, 2), (0, 3)]  # a tie is kept
    assert read_heads(heads([0.5])).ranking == [(0, 0)]  # one head: nothing to order
    with pytest.raises(HeadsFileError, match="all 3 heads have the same score"):
        read_heads(heads([1, 1.0, 1]))


def test_nonfinite_weight_names_the_tensor():
    from hsr.finite import count_nonfinite, nonfinite_weight

    model = torch.nn.Sequential(torch.nn.Linear(3, 3), torch.nn.Linear(3, 3))
    assert nonfinite_weight(model) is None
    with torch.no_grad():
        model[1].bias[0] = math.inf
    assert nonfinite_weight(model) == ("1.bias", 1)
    assert count_nonfinite(torch.tensor([1, 2])) == 0  # integers hold no NaN


def test_relatedness_tells_a_pruned_copy_from_another_model():
    from hsr.realign.external import relatedness

    gen = torch.Generator().manual_seed(0)
    dense = torch.randn(4096, generator=gen)
    assert relatedness(dense, dense.clone())[0] == 1.0  # Wanda / magnitude keep weights exactly
    updated = dense + 0.3 * torch.randn(4096, generator=gen)  # SparseGPT-like updates
    assert relatedness(dense, updated)[1] > 0.9
    other = torch.randn(4096, generator=gen)
    equal, corr = relatedness(dense, other)
    assert equal == 0.0 and abs(corr) < 0.1


def test_generation_budget_beyond_context_is_refused():
    from hsr.data import DataError
    from hsr.evaluation.generation import check_generation_budget

    check_generation_budget(48, 1024)
    check_generation_budget(10**9, None)  # unknown context: nothing to compare
    with pytest.raises(DataError, match="1,023"):
        check_generation_budget(1024, 1024)


def test_decompression_bomb_image_is_refused(tmp_path):
    from PIL import Image

    from hsr.data import DataError, load_image

    path = tmp_path / "bomb.png"
    Image.new("1", (12_000, 12_000)).save(path)  # 144 Mpixels in a few kB: above PIL's warning limit
    assert path.stat().st_size < 100_000
    with pytest.raises(DataError, match="too large to decode safely"):
        load_image(path)


def test_stage_json_of_the_wrong_shape_counts_as_not_done(tmp_path):
    from hsr.pipeline.stages import STAGE_FILE, run_stage

    built = []
    first = run_stage(tmp_path, "s", {"a": 1}, lambda tmp: built.append(1))
    assert not first.reused
    for wrong in ("[1, 2]", '"text"', '{"fingerprint": ' + json.dumps(first.fingerprint) + ', "seconds": "slow"}'):
        (tmp_path / "s" / STAGE_FILE).write_text(wrong)
        again = run_stage(tmp_path, "s", {"a": 1}, lambda tmp: built.append(1))
        assert again.fingerprint == first.fingerprint
    assert len(built) == 3  # recomputed twice; the third (right fingerprint, bad seconds) is reused
    assert again.reused and again.seconds == 0.0


@pytest.mark.parametrize("command", ["align", "prune", "heads", "realign", "evaluate"])
def test_every_model_command_takes_no_progress(command):
    from hsr.cli import build_parser

    argv = {"realign": ["--pruned", "p", "--heads", "h"]}.get(command, [])
    args = build_parser().parse_args([command, *argv, "--out", "o", "--no-progress"])
    assert args.progress is False


# ------------------------------------------------------------------------------------------ default model cache
def test_default_model_cache_is_verified_and_reconverted_when_damaged(tmp_path, monkeypatch, caplog):
    from hsr import loading
    from hsr.cache_digest import MANIFEST

    calls = []

    def fake_convert(gguf, folder):
        calls.append(folder)
        (folder / "config.json").write_text("{}")
        (folder / "model.safetensors").write_bytes(bytes(range(256)) * 64)

    monkeypatch.setenv("HSR_CACHE", str(tmp_path))
    monkeypatch.setattr(loading, "_convert_default", fake_convert)
    monkeypatch.setattr(loading, "smollm_gguf_path", lambda: tmp_path / "x.gguf")
    target = loading.default_model_dir()
    assert (target / MANIFEST).is_file() and len(calls) == 1
    assert loading.default_model_dir() == target and len(calls) == 1  # verified, reused
    weights = target / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[100] ^= 0xFF  # one flipped byte, same size
    weights.write_bytes(bytes(data))
    assert loading.default_model_dir() == target and len(calls) == 2
    assert "SHA-256 differs" in caplog.text
    assert weights.read_bytes() == bytes(range(256)) * 64
    (target / MANIFEST).unlink()  # a cache written before digests were kept
    loading.default_model_dir()
    assert len(calls) == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temporary or old folder left


@pytest.mark.parametrize("value", [math.nan, math.inf, True, "0.5"])
def test_lm_eval_values_must_be_finite_numbers(tmp_path, value):
    from hsr.report.build import ReportError, read_metrics

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"model": "m", "lm_eval": {"arc": {"acc": {"value": value, "stderr": None}}}}))
    with pytest.raises(ReportError, match="lm_eval"):
        read_metrics(path)
    path.write_text(json.dumps({"model": "m", "lm_eval": {"arc": {"acc": {"value": 0.5, "stderr": 0.01}}}}))
    assert read_metrics(path)["lm_eval"]["arc"]["acc"]["value"] == 0.5


def test_cache_digest_hashes_only_files_whose_stat_changed(tmp_path, monkeypatch):
    from hsr import cache_digest
    from hsr.cache_digest import manifest_problem, write_manifest

    monkeypatch.setattr(cache_digest, "RACY_NS", 50_000_000)  # timestamps 50 ms apart are told apart here
    hashed: list[str] = []
    real = cache_digest.file_digest
    monkeypatch.setattr(cache_digest, "file_digest", lambda p: hashed.append(p.name) or real(p))
    (tmp_path / "a.bin").write_bytes(b"a" * 4096)
    (tmp_path / "b.bin").write_bytes(b"b" * 4096)
    write_manifest(tmp_path)
    manifest = tmp_path / cache_digest.MANIFEST
    written = (manifest.stat().st_mtime_ns, manifest.read_bytes())
    time.sleep(0.1)

    def check(**kw) -> tuple[str | None, list[str]]:
        hashed.clear()
        return manifest_problem(tmp_path, **kw), sorted(hashed)

    assert check() == (None, [])  # write_manifest waited out the racy window: trusted at once, nothing read
    time.sleep(0.1)
    (tmp_path / "a.bin").write_bytes(b"a" * 4096)  # same bytes, new mtime: hashed, accepted
    time.sleep(0.1)
    assert check() == (None, ["a.bin"])
    assert check() == (None, ["a.bin"])  # and hashed again: checking never writes to the cache
    b = tmp_path / "b.bin"
    st = b.stat()
    time.sleep(0.1)
    b.write_bytes(b"B" + b"b" * 4095)  # corrupted, same size, and its mtime put back
    os.utime(b, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert b.stat().st_mtime_ns == st.st_mtime_ns and b.stat().st_size == st.st_size
    problem, seen = check()
    assert seen == ["a.bin", "b.bin"] and "b.bin changed since it was written (SHA-256 differs)" in problem  # the ctime moved
    b.write_bytes(b"b" * 4096)
    time.sleep(0.1)
    assert check() == (None, ["a.bin", "b.bin"])
    assert check(full=True) == (None, ["a.bin", "b.bin"])  # asked for: every file hashed
    monkeypatch.setenv("HSR_VERIFY_CACHE", "1")
    assert check() == (None, ["a.bin", "b.bin"])
    assert (manifest.stat().st_mtime_ns, manifest.read_bytes()) == written  # checking never rewrote the manifest
