"""Run folders never lose data: inputs are protected, foreign folders refused, caches keyed on content,
one writer at a time, leftovers of killed writers cleaned, stale reports removed."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys

import pytest
import yaml

from hsr.cli import main
from hsr.io import OutputExistsError, atomic_output_dir
from hsr.rundir import LOCK_FILE, RUN_MARKER, RunLock, RunLockedError, check_out_against_inputs, clean_stale_temps, OutputError

from test_run_pipeline import tiny_run_config  # noqa: F401  (fixture)

NO_EVAL = ["--set", "evaluate.enabled=false", "--set", "realign.control=false"]


def _digest_tree(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def _run(config_path, *extra):
    return main(["run", str(config_path), "--no-progress", *extra])


# ---------------------------------------------------------------- inputs are never touched
def test_out_overlapping_an_input_is_refused(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    for out in (model, tmp_path, model / "sub"):
        with pytest.raises(OutputError, match="overlaps the input"):
            check_out_against_inputs(out, [str(model), None, "org/hub-id"])
    assert check_out_against_inputs(tmp_path / "elsewhere", [str(model)]) == (tmp_path / "elsewhere").resolve()


@pytest.mark.parametrize("where", ["model", "parent"])
def test_evaluate_and_prune_with_overwrite_never_delete_the_model(tmp_path, capsys, where):
    from hsr.testing.tiny import save_tiny_model

    model = save_tiny_model("qwen2", tmp_path / "model")
    before = _digest_tree(tmp_path)
    out = model if where == "model" else tmp_path
    assert main(["evaluate", "--model", str(model), "--out", str(out), "--overwrite", "--suite", "utility", "--mcq", "none"]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert main(["prune", "--model", str(model), "--method", "magnitude", "--sparsity", "0.5", "--out", str(out), "--overwrite"]) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert _digest_tree(tmp_path) == before


def test_run_refuses_a_folder_it_did_not_create(tiny_run_config, capsys):
    config_path, run_dir, model_dir = tiny_run_config
    # The stage-by-stage flow (docs/cli.md) puts `hsr prune --out runs/pruned` beside a later run folder.
    (run_dir / "pruned").mkdir(parents=True)
    (run_dir / "pruned" / "keep.txt").write_text("my pruned model")
    assert _run(config_path, *NO_EVAL) == 2
    assert "did not write" in capsys.readouterr().err
    assert (run_dir / "pruned" / "keep.txt").read_text() == "my pruned model"
    assert not (run_dir / RUN_MARKER).exists()
    # --out equal to the model folder is refused too, and the model is untouched.
    before = _digest_tree(model_dir)
    assert _run(config_path, "--out", str(model_dir), *NO_EVAL) == 2
    assert "overlaps the input" in capsys.readouterr().err
    assert _digest_tree(model_dir) == before


def test_stage_folder_without_stage_file_is_never_replaced(tiny_run_config, capsys):
    config_path, run_dir, _ = tiny_run_config
    assert _run(config_path, *NO_EVAL) == 0
    (run_dir / "importance").rename(run_dir / "moved")
    (run_dir / "importance").mkdir()
    (run_dir / "importance" / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert _run(config_path, *NO_EVAL) == 2
    assert "was not written by hsr run" in capsys.readouterr().err
    assert (run_dir / "importance" / "notes.txt").read_text() == "mine"


# ---------------------------------------------------------------- content fingerprints
def test_edited_data_or_replaced_weights_are_never_served_from_cache(tiny_run_config, capsys):
    config_path, run_dir, model_dir = tiny_run_config
    assert _run(config_path, *NO_EVAL) == 0
    capsys.readouterr()
    config = yaml.safe_load(config_path.read_text())
    calib = config["prune"]["data"]
    rows = open(calib).read().splitlines()
    rows[0] = json.dumps({"prompt": "An edited prompt.", "response": "An edited answer that is long enough."})
    open(calib, "w").write("\n".join(rows) + "\n")
    os.utime(calib, ns=(0, 0))  # even with an old timestamp: content decides
    assert _run(config_path, *NO_EVAL) == 0
    out = capsys.readouterr().out
    assert "[hsr run] pruned: done" in out and "[hsr run] heads: reused" in out

    # Replace the weights at the same path (same size): every model stage recomputes.
    from safetensors.torch import load_file, save_file

    weights = model_dir / "model.safetensors"
    tensors = load_file(str(weights))
    name = next(k for k in tensors if k.endswith("q_proj.weight"))
    tensors[name] = tensors[name] * 2
    save_file(tensors, str(weights), metadata={"format": "pt"})
    assert _run(config_path, *NO_EVAL) == 0
    out = capsys.readouterr().out
    for stage in ("pruned", "heads", "importance", "realigned"):
        assert f"[hsr run] {stage}: done" in out, stage


def test_report_is_removed_when_its_models_change_without_evaluation(tiny_run_config, capsys):
    config_path, run_dir, _ = tiny_run_config
    assert _run(config_path, "--set", "realign.control=false") == 0
    assert (run_dir / "report" / "report.md").is_file()
    capsys.readouterr()
    assert _run(config_path, "--set", "realign.top_h=1", *NO_EVAL) == 0
    assert "removed" in capsys.readouterr().out
    assert not (run_dir / "report").exists()


# ---------------------------------------------------------------- one writer, no litter
def test_a_second_run_on_a_locked_folder_fails_naming_the_holder(tiny_run_config, capsys):
    config_path, run_dir, _ = tiny_run_config
    holder = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        run_dir.mkdir(parents=True)
        (run_dir / RUN_MARKER).write_text("{}")
        import socket

        (run_dir / LOCK_FILE).write_text(json.dumps({"pid": holder.pid, "host": socket.gethostname(), "command": "hsr run"}))
        assert _run(config_path, *NO_EVAL) == 2
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "in use" in err and err.count("\n") == 1
    finally:
        holder.kill()
        holder.wait()
    # The holder is gone now: its lock is taken over and the run succeeds, leaving no lock behind.
    assert _run(config_path, *NO_EVAL) == 0
    assert not (run_dir / LOCK_FILE).exists()


def test_lock_is_exclusive_and_released(tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
            RunLock(tmp_path).acquire()
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):  # free again
        pass


def test_leftovers_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    (tmp_path / f".pruned.tmp-{dead_pid}-abc").mkdir()
    (tmp_path / f".pruned.tmp-{dead_pid}-abc" / "partial.safetensors").write_bytes(b"x")
    (tmp_path / "eval").mkdir()
    (tmp_path / "eval" / f".dense.old-{dead_pid}").write_text("old")
    (tmp_path / f".heads.tmp-{os.getpid()}-live").mkdir()
    (tmp_path / "keep.tmp-1").write_text("not a hidden hsr temp name")
    removed = clean_stale_temps(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f".pruned.tmp-{dead_pid}-abc", f".dense.old-{dead_pid}"])
    assert (tmp_path / f".heads.tmp-{os.getpid()}-live").is_dir() and (tmp_path / "keep.tmp-1").is_file()


def test_leftover_looking_inputs_are_never_removed(tmp_path):
    from hsr.inputs import Inputs

    dead = 99_999_999  # above any pid_max: never a live process
    for name in (".model.tmp-{}-abc", ".data.old-{}", ".other.tmp-{}-x", ".kept.tmp-{}-y"):
        (tmp_path / name.format(dead)).mkdir()
        (tmp_path / name.format(dead) / "weights.bin").write_bytes(b"w")
    inputs = Inputs()
    inputs.add(tmp_path / f".model.tmp-{dead}-abc", "--model")  # declared: remembered for the whole process
    inputs.add(tmp_path / f".data.old-{dead}" / "weights.bin", "--data")  # a file inside one: its folder stays
    removed = clean_stale_temps(tmp_path, keep=[tmp_path / f".kept.tmp-{dead}-y"])
    assert [p.name for p in removed] == [f".other.tmp-{dead}-x"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(n.format(dead) for n in (".model.tmp-{}-abc", ".data.old-{}", ".kept.tmp-{}-y"))


def test_atomic_output_over_a_file_is_a_clear_error_and_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    target.write_text("a file")
    with pytest.raises(OutputExistsError, match="is a file"):
        with atomic_output_dir(target, overwrite=True):
            pass
    assert target.read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    blocked = tmp_path / "out" / "below"
    with pytest.raises(OutputExistsError):
        with atomic_output_dir(blocked):
            pass


def test_report_refuses_evaluations_of_models_rebuilt_since(tiny_run_config, capsys, tmp_path):
    config_path, run_dir, _ = tiny_run_config
    assert _run(config_path, "--set", "realign.control=false") == 0
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r1")]) == 0
    assert _run(config_path, "--set", "realign.top_h=1", *NO_EVAL) == 0  # realigned rebuilt, not evaluated
    capsys.readouterr()
    assert main(["report", str(run_dir), "--out", str(tmp_path / "r2")]) == 2
    err = capsys.readouterr().err
    assert "measured an earlier realigned model" in err
    assert not (tmp_path / "r2").exists()


def _stage_outputs(run_dir):
    """Result files whose bytes must not depend on an interruption (no timings in them)."""
    names = ["pruned/model.safetensors", "pruned/mask.safetensors", "importance/utility.safetensors",
             "importance/safety.safetensors", "realigned/model.safetensors", "realigned/restored.safetensors",
             "eval/realigned/generations_harmful.jsonl", "eval/pruned/generations_benign.jsonl", "heads/heads.json"]
    return {n: hashlib.sha256((run_dir / n).read_bytes()).hexdigest() for n in names}


# `hsr run` whose importance stage blocks (inside its temp folder) until the process is killed.
_BLOCKED_IMPORTANCE = """
import pathlib, sys, time
import hsr.realign
from hsr.cli import main

def blocked(*args, **kwargs):
    pathlib.Path(sys.argv[1]).write_text("importance started")
    time.sleep(3600)

hsr.realign.compute_importance = blocked
sys.exit(main(["run", *sys.argv[2:]]))
"""


def test_sigkill_mid_stage_then_rerun_is_byte_identical_and_a_second_run_is_refused_meanwhile(tiny_run_config, tmp_path):
    import signal
    import time

    config_path, run_dir, _ = tiny_run_config
    extra = ["--set", "realign.control=false"]
    clean = tmp_path / "clean"
    assert _run(config_path, "--out", str(clean), *extra) == 0

    cmd = [sys.executable, "-m", "hsr", "run", str(config_path), "--no-progress", *extra]
    env = {**os.environ, "TQDM_DISABLE": "1"}
    started = tmp_path / "importance-started"
    victim = subprocess.Popen([sys.executable, "-c", _BLOCKED_IMPORTANCE, str(started), *cmd[4:]], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:  # the victim blocks inside the importance stage until killed: no race with the stage finishing
        deadline = time.time() + 240
        while time.time() < deadline and not started.exists() and victim.poll() is None:
            time.sleep(0.05)
        assert started.exists() and list(run_dir.glob(".importance.tmp-*")), "the importance stage never started"
        second = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and f"pid {victim.pid}" in second.stderr.strip().splitlines()[-1]
        victim.send_signal(signal.SIGKILL)
    finally:
        victim.kill()
        victim.wait()
    assert (run_dir / LOCK_FILE).exists() and list(run_dir.glob(".importance.tmp-*"))  # what a kill leaves

    again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-2000:]
    assert "reused" in again.stdout  # stages finished before the kill are kept
    assert not list(run_dir.glob(".*.tmp-*")) and not (run_dir / LOCK_FILE).exists()
    assert _stage_outputs(run_dir) == _stage_outputs(clean)
