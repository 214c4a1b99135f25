"""benchmarks/gpu_check.sh: skips cleanly without CUDA, and its summary reads what the steps wrote."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from gpu_check_summary import summarize  # noqa: E402


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present: the script would run")
def test_gpu_check_skips_cleanly_without_cuda(tmp_path):
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "no CUDA device: skipped", done.stderr
    assert (tmp_path / "out" / "results.txt").read_text().strip() == "no CUDA device: skipped"


def _heads(seconds_batching, peak):
    runs = [{"variant": "naive exact", "seconds": 10.0, "x_naive": 1.0, "peak_gpu_bytes": 100},
            {"variant": "fast + prompt batching", "seconds": seconds_batching, "x_naive": 10 / seconds_batching,
             "peak_gpu_bytes": peak, "max_diff": 1e-7}]
    return {"device": "cuda:0", "runs": runs}


def test_summary_ratios_and_failed_steps(tmp_path):
    (tmp_path / "steps.tsv").write_text("cuda_tests\t0\t40\nheads_gpu_default\t0\t50\nheads_1024\t0\t70\n"
                                        "memory\t124\t150\ntorchrun_heads\t0\t30\n")
    (tmp_path / "heads_gpu_default.json").write_text(json.dumps(_heads(1.0, 800)))
    (tmp_path / "heads_1024.json").write_text(json.dumps(_heads(4.0, 200)))
    (tmp_path / "memory.json").write_text('{"stages": {"prune": ')  # killed while writing
    out = summarize(tmp_path, 1)
    assert out["heads_gpu_default_vs_1024"] == {"fast + prompt batching": {"speedup_gpu_default_vs_1024": 4.0,
                                                                           "peak_gpu_ratio": 4.0}}
    assert out["steps"]["memory"] == {"rc": 124, "seconds": 150, "timed_out": True}
    assert out["memory"] is None and out["ok"] is False
    assert out["torchrun"] == {"nproc": 1, "nccl_group": False, "heads_json": False}
