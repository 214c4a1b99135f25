"""Several processes (torchrun, gloo on CPU) give the same bits as one: head scores, checkpoints, generations.

The multi-process tests launch ``torch.distributed.run --standalone --nproc-per-node 2 -m hsr ...``
on a tiny model and compare its files with a one-process run of the same command (in this process).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hsr
from hsr import distributed
from hsr.cli import main
from hsr.distributed import SINGLE, Dist, DistributedError, balance
from hsr.heads.units import Unit, engine_rounds, plan_units
from hsr.testing.tiny import save_tiny_model

SRC = str(Path(hsr.__file__).resolve().parents[1])
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def single_env(monkeypatch):
    """No launcher variables, whatever the environment the tests run in."""
    for var in LAUNCH_ENV:
        monkeypatch.delenv(var, raising=False)


# ------------------------------------------------------------------ sharding, without processes


def test_balance_is_deterministic_complete_and_balanced():
    costs = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]  # a fast-engine layer ladder: early layers cost most
    bins = balance(costs, 3)
    assert bins == balance(costs, 3)
    assert sorted(i for b in bins for i in b) == list(range(10))
    loads = [sum(costs[i] for i in b) for b in bins]
    assert max(loads) - min(loads) <= max(costs) and max(loads) <= 19  # contiguous thirds would give 27
    assert balance([1.0] * 4, 1) == [[0, 1, 2, 3]]
    assert balance([], 2) == [[], []]


def test_units_follow_batch_chunks_and_engine_calls_get_one_chunk_per_layer():
    units = plan_units({0: [0, 1, 2, 3, 4], 2: [1, 3], 1: []}, batch_heads=2)
    assert [(u.layer, u.part, u.parts, u.heads) for u in units] == [
        (0, 0, 3, (0, 1)), (0, 1, 3, (2, 3)), (0, 2, 3, (4,)), (2, 0, 1, (1, 3))
    ]
    assert units[-1].checkpoint_part() is None and units[0].checkpoint_part() == 0  # whole layers keep their file name
    rounds = list(engine_rounds(units))
    assert all(len({u.layer for u in r}) == len(r) for r in rounds)
    assert sorted((u for r in rounds for u in r), key=lambda u: (u.layer, u.part)) == units
    shares = [Dist(rank=r, world_size=2).shard(units, cost=lambda u: len(u.heads)) for r in range(2)]
    assert sorted(shares[0] + shares[1], key=lambda u: (u.layer, u.part)) == units and all(shares)


def test_single_process_dist_is_a_no_op(single_env):
    assert SINGLE.is_main and not SINGLE.active
    assert SINGLE.all_gather_object({"a": 1}) == [{"a": 1}] and SINGLE.broadcast_object(3) == 3
    assert SINGLE.shard([Unit(0, 0, 1, (0,))]) == [Unit(0, 0, 1, (0,))]
    with distributed.session("cpu") as dist:
        assert dist == Dist(device="cpu")


def test_launch_errors_are_one_actionable_line(single_env, monkeypatch, capsys, tmp_path):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    assert main(["report", str(tmp_path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "does not split its work across processes" in err and "(rank 1 of 2)" in err and err.count("\n") == 1
    with pytest.raises(DistributedError, match="MASTER_ADDR and MASTER_PORT not set"), distributed.session("cpu"):
        pass
    if torch.cuda.device_count() < 2:
        with pytest.raises(DistributedError, match="--nproc-per-node"):
            distributed.rank_device("cuda", 2, 3)
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(DistributedError, match="does not fit WORLD_SIZE=2"):
        distributed.env_world()


# ------------------------------------------------------------------ 2 processes vs 1


def _launch(cmd, cwd):
    """Run ``cmd`` with one thread per process: bits are the same across process counts only for the
    same thread count (a matrix product's reduction order follows its threads)."""
    env = {k: v for k, v in os.environ.items() if k not in LAUNCH_ENV}
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(cmd, check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _torchrun(args, cwd, nproc=2):
    return _launch([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc),
                    "-m", "hsr", *args], cwd)


def _one_process(args, cwd):
    return _launch([sys.executable, "-m", "hsr", *args], cwd)


def _jsonl(path, prompts):
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in prompts))
    return path


def _heads(path):
    data = json.loads(Path(path).read_text())
    assert "timings" not in data  # wall times live in timings.json: heads.json has the same bytes for the same inputs
    return data


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    save_tiny_model("qwen2", root / "model")
    _jsonl(root / "harmful.jsonl", [f"How do I do harmful thing {i}?" for i in range(5)])
    _jsonl(root / "benign.jsonl", [f"Tell me something nice about topic {i}." for i in range(7)])
    return root


pytestmark_dist = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch built without distributed")


@pytest.mark.distributed
@pytestmark_dist
def test_two_processes_score_heads_like_one_and_resume_its_checkpoint(tiny_dir, single_env, tmp_path):
    """gships + Sahara, chunks of 3 heads (3 + 1 per layer): heads.json and every checkpoint file equal
    one process's, bit for bit; a two-process rerun over a partial one-process checkpoint resumes."""
    common = ["heads", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "harmful.jsonl"), "--score", "gships",
              "--sahara-steps", "2", "--batch-heads", "3", "--no-progress"]
    ckpt = tmp_path / "ckpt"
    _one_process([*common, "--out", str(tmp_path / "one"), "--checkpoint-dir", str(ckpt)], cwd=tmp_path)
    files = {p.name: p.read_bytes() for p in ckpt.glob("*.safetensors")}
    assert len(files) == 4 + 4 + 3 and "sahara002-layer0000.safetensors" in files  # Sahara's head taken: layer 0 is one chunk
    kept = sorted(files)[::4]
    for name in set(files) - set(kept):  # as if the run had been killed before writing these
        (ckpt / name).unlink()
    stamps = {n: (ckpt / n).stat().st_mtime_ns for n in kept}
    out = _torchrun([*common, "--out", str(tmp_path / "two"), "--checkpoint-dir", str(ckpt)], cwd=tmp_path)
    assert "in 2 processes" in out and out.count("Scored ") == 1  # rank 0 alone reports
    assert _heads(tmp_path / "two" / "heads.json") == _heads(tmp_path / "one" / "heads.json")
    assert {n: (ckpt / n).stat().st_mtime_ns for n in kept} == stamps  # resumed: kept units were not recomputed
    assert {p.name: p.read_bytes() for p in ckpt.glob("*.safetensors")} == files  # recomputed units: same bytes


@pytest.mark.distributed
@pytestmark_dist
def test_two_processes_approx_engine_and_fresh_run_match_one(tiny_dir, single_env, tmp_path):
    common = ["heads", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "harmful.jsonl"), "--engine", "approx",
              "--approx-top-k", "5", "--batch-heads", "2", "--no-progress"]
    _one_process([*common, "--out", str(tmp_path / "one")], cwd=tmp_path)
    _torchrun([*common, "--out", str(tmp_path / "two")], cwd=tmp_path)
    one, two = (tmp_path / "one" / "heads.json").read_bytes(), (tmp_path / "two" / "heads.json").read_bytes()
    assert _heads(tmp_path / "one" / "heads.json")["approx"]["rescored"]  # the merged rescoring ran
    assert one == two  # the same bytes: no wall times in heads.json (they are in timings.json)
    assert (tmp_path / "two" / "timings.json").is_file()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # default checkpoint removed by rank 0


@pytest.mark.distributed
@pytestmark_dist
def test_uneven_shards_give_the_bytes_of_one_process(tiny_dir, single_env, tmp_path):
    """Exact Ships, chunks of 3 of the 4 heads per layer: 4 units. At 400 tokens per forward (73 per row
    here) the first round (3 + 3 heads + the unablated row) runs as two single units and the second
    (1 + 1) as one merged forward: 3 work items, so one rank computes one and the other two. heads.json
    has the bytes of one process's."""
    common = ["heads", "--model", str(tiny_dir / "model"), "--data", str(tiny_dir / "harmful.jsonl"), "--score", "ships",
              "--batch-heads", "3", "--max-batch-tokens", "400", "--no-progress"]
    _one_process([*common, "--out", str(tmp_path / "one")], cwd=tmp_path)
    _torchrun([*common, "--out", str(tmp_path / "two")], cwd=tmp_path)
    assert (tmp_path / "one" / "heads.json").read_bytes() == (tmp_path / "two" / "heads.json").read_bytes()


def test_work_items_depend_on_the_plan_only():
    """Merged rounds stay whole and single units split, whatever the shard; items cover every unit once."""
    from hsr.heads.units import work_items

    class Merging:
        def merges(self, n_heads, fixed=()):
            return n_heads <= 4

    units = plan_units({0: [0, 1, 2, 3, 4], 1: [0, 1, 2], 2: [1]}, batch_heads=2)
    items = work_items(Merging(), units)
    assert [(i.merged, [(u.layer, u.heads) for u in i.units]) for i in items] == [
        (False, [(0, (0, 1))]), (False, [(1, (0, 1))]), (False, [(2, (1,))]),  # round 0: 5 heads, too many to merge
        (True, [(0, (2, 3)), (1, (2,))]),  # round 1: 3 heads in one forward
        (False, [(0, (4,))]),  # round 2: one unit alone
    ]
    assert sorted((u for i in items for u in i.units), key=lambda u: (u.layer, u.part)) == units


@pytest.mark.distributed
@pytestmark_dist
def test_two_processes_generate_like_one(tiny_dir, single_env, tmp_path):
    """Batches of 2 over 5 + 7 prompts: the ranks get different numbers of batches and prompts."""
    common = ["evaluate", "--model", str(tiny_dir / "model"), "--harmful", str(tiny_dir / "harmful.jsonl"),
              "--benign", str(tiny_dir / "benign.jsonl"), "--batch-size", "2", "--max-new-tokens", "6",
              "--suite", "safety", "--no-progress"]
    assert main([*common, "--out", str(tmp_path / "one")]) == 0
    _torchrun([*common, "--out", str(tmp_path / "two")], cwd=tmp_path)
    for name in ("generations_harmful.jsonl", "generations_benign.jsonl"):
        one = (tmp_path / "one" / name).read_bytes()
        assert one == (tmp_path / "two" / name).read_bytes(), name
        assert len(one.splitlines()) == (5 if "harmful" in name else 7)
    metrics = [json.loads((tmp_path / d / "metrics.json").read_text()) for d in ("one", "two")]
    for m in metrics:
        m.pop("seconds")
    assert metrics[0] == metrics[1]
