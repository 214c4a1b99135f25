"""Benchmark ``hsr heads`` in 1 process vs N processes (torchrun, gloo on CPU) on the same machine.

    .venv/bin/python benchmarks/heads_nproc.py                       # SmolLM2-135M-Instruct, 8 prompts, 1 vs 2
    .venv/bin/python benchmarks/heads_nproc.py --model tiny --nproc 2 --score gships

Runs the same ``hsr heads`` command twice: once as one process, once under
``torch.distributed.run --standalone --nproc-per-node N``. The CPU cores are shared out evenly
(one process gets all of them as threads, each of N processes gets cores / N), so the comparison
is processes against threads on the same hardware. Prints each run's wall time (start to exit,
model loading included) and the scoring phase as rank 0 timed it, their ratios, and compares the
two heads.json files: with ``--threads`` (the same thread count in every process) they must be
identical byte for byte; with different thread counts float reductions run in another order, so
the script prints the largest score difference instead.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _run(nproc: int, threads: int, heads_args: list[str], out: Path) -> float:
    """Wall seconds of one ``hsr heads`` run with ``nproc`` processes of ``threads`` threads each."""
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(PYTHONPATH=SRC + os.pathsep + env.get("PYTHONPATH", ""), OMP_NUM_THREADS=str(threads))
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc)] if nproc > 1 else []
    cmd = [sys.executable, *launcher, "-m", "hsr", "heads", *heads_args, "--no-progress", "--out", str(out)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, check=False, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stderr[-4000:]}")
    return wall


def _heads(out: Path) -> tuple[bytes, dict, dict]:
    timings = out / "timings.json"
    raw = (out / "heads.json").read_bytes()
    return raw, json.loads(raw), json.loads(timings.read_text()) if timings.is_file() else {}


def _largest_difference(one: dict, many: dict) -> float:
    a = {(h["layer"], h["head"]): h["score"] for h in one["heads"]}
    b = {(h["layer"], h["head"]): h["score"] for h in many["heads"]}
    return max(abs(a[k] - b[k]) for k in a)


def _model(spec: str, tmp: Path) -> str:
    """``tiny``: a tiny random LLaVA saved to ``tmp`` (seconds); anything else is passed to --model."""
    if spec != "tiny":
        return spec
    sys.path.insert(0, SRC)
    from hsr.testing.tiny import save_tiny_model

    return str(save_tiny_model("llava", tmp / "tiny-llava"))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="default", help="hsr --model spec, or 'tiny' (default: SmolLM2-135M-Instruct)")
    p.add_argument("--nproc", type=int, default=2, help="processes of the multi-process run (default 2)")
    p.add_argument("--prompts", type=int, default=8, help="harmful prompts (builtin:safety subset)")
    p.add_argument("--score", choices=["ships", "gships"], default="ships")
    p.add_argument("--engine", choices=["fast", "naive", "approx"], default="fast")
    p.add_argument("--batch-heads", type=int, default=16)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="CPU cores to share out (default: all)")
    p.add_argument("--threads", type=int, default=0, help="threads of every process in both runs (default 0: the "
                   "one process gets --cores threads, each of N gets cores / N)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        heads_args = ["--model", _model(args.model, tmp), "--limit", str(args.prompts), "--score", args.score,
                      "--engine", args.engine, "--batch-heads", str(args.batch_heads), "--max-length", str(args.max_length)]
        one_threads = args.threads or args.cores
        many_threads = args.threads or max(1, args.cores // args.nproc)
        wall_1 = _run(1, one_threads, heads_args, tmp / "one")
        wall_n = _run(args.nproc, many_threads, heads_args, tmp / "many")
        (raw_one, one, t_one), (raw_many, many, t_many) = _heads(tmp / "one"), _heads(tmp / "many")
    if one_threads == many_threads:
        assert raw_one == raw_many, "heads.json differs between 1 and N processes of the same thread count"
        same = "identical bytes (same threads per process)"
    else:
        same = (f"threads differ ({one_threads} vs {many_threads}): largest score difference "
                f"{_largest_difference(one, many):.2e}; bytes {'identical' if raw_one == raw_many else 'differ'}")
    s1, sn = t_one.get("scores_s", float("nan")), t_many.get("scores_s", float("nan"))
    print(f"model {args.model}: {one['num_layers']} layers x {one['num_heads']} heads, {one['n_prompts']} prompts, "
          f"{args.score}/{args.engine}, batch_heads={args.batch_heads}, {args.cores} cores, load average "
          f"{os.getloadavg()[0]:.1f} at the end")
    print(f"1 process  x {one_threads} threads : wall {wall_1:7.2f} s   scoring {s1:7.2f} s")
    print(f"{args.nproc} processes x {many_threads} threads : wall {wall_n:7.2f} s   scoring {sn:7.2f} s")
    print(f"ratio 1 / {args.nproc} processes      : wall {wall_1 / wall_n:5.2f}x     scoring {s1 / sn:5.2f}x")
    print(f"heads.json: {same}")


if __name__ == "__main__":
    main()
