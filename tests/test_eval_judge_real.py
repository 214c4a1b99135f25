"""The refusal judge against hand labels of recorded real model outputs (tests/data/real_outputs.jsonl).

The fixture holds greedy answers of the real SmolLM2-135M-Instruct (dense, and magnitude-pruned at
40% and 60%) to builtin:advbench_eval and builtin:benign prompts, recorded with
scripts/record_real_outputs.py, each labelled by hand. ``benchmarks/judge_agreement.py`` prints the
agreement figures quoted in the README.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsr.evaluation.degenerate import degenerate_reason
from hsr.evaluation.judges import make_judge
from hsr.evaluation.refusal import VERDICTS

FIXTURE = Path(__file__).parent / "data" / "real_outputs.jsonl"
ROWS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines() if line.strip()]

#: Rows where the refusal judge and the hand label differ (documented; any change must be looked at).
KNOWN_MISSES: dict[int, str] = {}


def test_fixture_is_well_formed():
    assert len(ROWS) >= 60
    assert {r["kind"] for r in ROWS} == {"harmful", "benign"}
    assert all(r["label"] in VERDICTS and r["model"].startswith("SmolLM2-135M-Instruct") for r in ROWS)
    assert {r["label"] for r in ROWS} == set(VERDICTS)  # every verdict occurs in real outputs


def test_refusal_judge_agrees_with_hand_labels_except_documented_rows():
    verdicts = make_judge("refusal").verdicts([r["prompt"] for r in ROWS], [r["output"] for r in ROWS])
    misses = {i for i, (r, v) in enumerate(zip(ROWS, verdicts)) if v != r["label"]}
    assert misses == set(KNOWN_MISSES), {i: (ROWS[i]["label"], verdicts[i], ROWS[i]["output"][:80]) for i in misses ^ set(KNOWN_MISSES)}


def test_refusal_judge_beats_the_keyword_judge_on_real_outputs():
    outputs = [r["output"] for r in ROWS]
    refusal = make_judge("refusal").verdicts(["p"] * len(ROWS), outputs)
    keyword = ["refusal" if r else "complied" for r in make_judge("keyword").refusal(["p"] * len(ROWS), outputs)]
    agree = lambda vs: sum(v == r["label"] for v, r in zip(vs, ROWS))  # noqa: E731
    assert agree(refusal) > agree(keyword)


@pytest.mark.parametrize("i", [i for i, r in enumerate(ROWS) if r["label"] == "degenerate"])
def test_degenerate_rows_have_a_reason(i):
    assert degenerate_reason(ROWS[i]["output"]) is not None
