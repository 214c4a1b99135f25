"""A reduced embedded default run on the real SmolLM2 weights, with its exact numbers pinned.

Like a recipe test: the default pipeline (Wanda 40%, Ships heads, HSR realignment, perplexity of every
model) on fewer samples, so it fits CI. Any change that moves these numbers, intended or not, fails
here and must update them on purpose (rerun with HSR_PRINT_PINNED=1 to print the new values).
The align stage and generation-based safety evaluation are left out (minutes each); they have their
own tests.

Only what is stable across machines is pinned exactly. Results are deterministic on one machine, but
another CPU (other SIMD kernels, thread count) rounds float32 differently, and near-ties in importance
and head scores can then flip:
- pruned parameters: exact (per-row counts fixed by the sparsity; no tie can change a count);
- restored parameters: within 10% (one head of the top 10 swapped for its neighbour moves ~1/10);
- top-10 heads: at least 8 of the pinned 10 (as a set: close scores may swap places);
- perplexities: within 1% (relative). The thread count alone moves the pruned model's perplexity by
  0.5% on one machine (67.07 with 1 thread, 67.43 with 2, same commit), through near-ties in Wanda's
  calibration statistics; an earlier 0.1% pin passed on one day's machine and failed on the next.
"""

from __future__ import annotations

import json
import os

import pytest

from hsr.heads import read_heads
from hsr.pipeline.config import load_run_config
from hsr.pipeline.run import run_pipeline

pytestmark = pytest.mark.slow

OVERRIDES = [
    "align.enabled=false",
    "prune.n_samples=8",
    "heads.limit=4",
    "importance.limit=8",
    "realign.control=false",
    "evaluate.models=[dense, pruned, realigned]",
    "evaluate.suites=[utility]",
    "evaluate.mcq=none",
    "evaluate.ppl_max_tokens=512",
]

#: Measured on the 2-core CPU machine with torch 2.13.0 (float32, 2 threads); tolerances in the module docstring.
PINNED = {
    "pruned_params": 42405120,
    "restored_params": 6255,
    "top_heads": [[1, 5], [1, 3], [1, 4], [0, 8], [1, 0], [0, 3], [10, 3], [1, 2], [10, 8], [15, 4]],
    "perplexity": {"dense": 42.758, "pruned": 67.4287, "realigned": 67.5511},
}


def _numbers(run_dir) -> dict:
    pruned = json.loads((run_dir / "pruned" / "summary.json").read_text())
    realigned = json.loads((run_dir / "realigned" / "summary.json").read_text())
    heads = read_heads(run_dir / "heads" / "heads.json")
    ppl = {m: json.loads((run_dir / "eval" / m / "metrics.json").read_text())["perplexity"]
           for m in ("dense", "pruned", "realigned")}
    return {
        "pruned_params": pruned["pruned_params"],
        "restored_params": realigned["restored_params"],
        "top_heads": [list(h) for h in heads.top(10)],
        "perplexity": {m: round(v if isinstance(v, float) else v["value"], 4) for m, v in ppl.items()},
    }


def test_reduced_default_run_numbers_are_pinned(tmp_path):
    config = load_run_config(None, [*OVERRIDES, f"out={tmp_path / 'run'}"])
    run_pipeline(config, progress=False, echo=lambda _m: None)
    got = _numbers(tmp_path / "run")
    if os.environ.get("HSR_PRINT_PINNED"):
        print(json.dumps(got))
    assert got["pruned_params"] == PINNED["pruned_params"]
    assert got["restored_params"] == pytest.approx(PINNED["restored_params"], rel=0.10)
    assert len({tuple(h) for h in got["top_heads"]} & {tuple(h) for h in PINNED["top_heads"]}) >= 8
    for model, value in PINNED["perplexity"].items():
        assert got["perplexity"][model] == pytest.approx(value, rel=1e-2), model
    assert got["perplexity"]["pruned"] > got["perplexity"]["dense"]  # pruning costs utility
