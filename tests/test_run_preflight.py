"""``hsr run`` refuses a generation budget the model cannot hold before any stage runs.

Same harness as tests/test_bad_inputs_values.py: the real CLI in a subprocess on a tiny model (1,024
positions); each case exits 2 with one ``hsr run: error: ...`` line and leaves its outputs folder empty
(no run folder, so no stage folder). Today's evaluate stage would only refuse it after prune, heads
and realign had run.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_cases import error_line, run_all

TINY = ["--set", "realign.top_h=2", "--set", "heads.limit=3"]  # the tiny model has 2 x 4 heads
CASES: list[tuple[str, list[str], str]] = [
    ("run-budget-beyond-context", ["run", "--model", "{in}/model", "--out", "{out}/run", *TINY,
                                   "--set", "evaluate.max_new_tokens=5000"],
     "evaluate.max_new_tokens is 5,000 but the model holds only 1,024 positions"),
    ("run-budget-equal-to-context", ["run", "--model", "{in}/model", "--out", "{out}/run", *TINY,
                                     "--set", "evaluate.max_new_tokens=1024"], "use at most 1,023"),
    ("sweep-budget-beyond-context", ["sweep", "--sparsities", "0.3,0.5", "--model", "{in}/model", "--out", "{out}/run",
                                     *TINY, "--set", "evaluate.max_new_tokens=2048"], "evaluate.max_new_tokens is 2,048"),
]


def _run_case(case: tuple[str, list[str], str], root: Path) -> dict:
    name, argv, _ = case
    outs = root / "outs" / name
    outs.mkdir(parents=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HSR_CACHE": str(root / "cache"), "TQDM_DISABLE": "1"}
    args = [a.replace("{in}", str(root / "inputs")).replace("{out}", str(outs)) for a in argv]
    proc = subprocess.run([sys.executable, "-m", "hsr", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True, env=env, cwd=outs, timeout=300)
    return {"rc": proc.returncode, "err": proc.stderr, "outs": sorted(p.name for p in outs.rglob("*"))}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    from hsr.testing.tiny import save_tiny_model

    root = tmp_path_factory.mktemp("preflight")
    save_tiny_model("qwen2", root / "inputs" / "model")
    return run_all(CASES, lambda c: _run_case(c, root))


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_budget_beyond_context_fails_before_any_stage(results, case):
    name, _, expected = case
    r = results[name]
    last = error_line(r)
    assert "error:" in last and expected in last, last
    assert r["outs"] == [], r["outs"]  # no run folder: no stage ran


def test_context_is_read_from_the_files(tmp_path):
    from hsr.shape import model_context
    from hsr.testing.tiny import save_tiny_model

    assert model_context(save_tiny_model("qwen2", tmp_path / "m")) == 1024
    assert model_context(tmp_path / "missing") is None  # loading reports that, with its own message
