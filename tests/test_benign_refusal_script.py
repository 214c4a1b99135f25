"""scripts/benign_refusal.py: over-refusal with intervals and a paired test against a reference model."""

from __future__ import annotations

import json

import pytest

from hsr.testing.scripts import load_script

SCRIPT = load_script("scripts/benign_refusal.py")


def _eval(path, verdicts, prompts=None):
    path.mkdir()
    prompts = prompts or [f"q{i}" for i in range(len(verdicts))]
    (path / "generations_benign.jsonl").write_text(
        "".join(json.dumps({"prompt": p, "output": "x", "verdict": v}) + "\n" for p, v in zip(prompts, verdicts)))
    return path


def test_counts_intervals_and_the_paired_test(tmp_path, capsys):
    ref = _eval(tmp_path / "ref", ["answered"] * 10)
    other = _eval(tmp_path / "other", ["refusal"] * 6 + ["answered"] * 3 + ["non-answer"])
    assert SCRIPT.main([f"pruned={ref}", f"taylor={other}", "--reference", "pruned"]) == 0
    out = capsys.readouterr().out
    assert "| taylor | 60.0% [31.3, 83.2] (6/10) | 3 | 1 | 0 | p = 0.031 (6 more, 0 fewer) |" in out
    assert "| pruned | 0.0% [0.0, 27.8] (0/10) | 10 | 0 | 0 | - |" in out


def test_other_prompts_are_refused(tmp_path):
    ref = _eval(tmp_path / "ref", ["answered"] * 2)
    other = _eval(tmp_path / "other", ["answered"] * 2, prompts=["a", "b"])
    with pytest.raises(SystemExit, match="other benign prompts"):
        SCRIPT.main([f"pruned={ref}", f"x={other}", "--reference", "pruned"])
