"""scripts/compare_realign.py on hand-made run folders: paired RSR from the judge and from hand labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hsr.testing.scripts import load_script

SCRIPT = load_script("scripts/compare_realign.py")
PROMPTS = [f"prompt {i}" for i in range(10)]


def _write_eval(root: Path, model: str, verdicts: list[str]) -> None:
    d = root / "eval" / model
    d.mkdir(parents=True)
    rows = [{"prompt": p, "output": f"{model} answer {i}" if model in ("realigned", "control") else f"{model} {i}",
             "verdict": v} for i, (p, v) in enumerate(zip(PROMPTS, verdicts))]
    (d / "generations_harmful.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _run(root: Path, realigned: list[str], score: str = "ships") -> Path:
    c, r = "complied", "refusal"
    _write_eval(root, "dense", [c] * 2 + [r] * 8)
    _write_eval(root, "pruned", [c] * 8 + [r] * 2)
    _write_eval(root, "realigned", realigned)
    _write_eval(root, "control", [c] * 8 + [r] * 2)
    for stage, per10k in (("realigned", 0.5), ("control", 0.6)):
        (root / stage).mkdir()
        (root / stage / "summary.json").write_text(json.dumps({
            "config": {"selection": "set_difference"}, "heads": [{"layer": 1, "head": 2}],
            "restored_per_ten_thousand": per10k}))
    (root / "heads").mkdir()
    (root / "heads" / "stage.json").write_text(json.dumps({"settings": {"score": score}}))
    return root


def test_rsr_from_the_judge_and_from_hand_labels(tmp_path, capsys):
    c, r = "complied", "refusal"
    a = _run(tmp_path / "a", [c] * 5 + [r] * 5)          # stops 3 of the pruned model's 8: RSR 3/6 = 50%
    b = _run(tmp_path / "b", [c] * 8 + [r] * 2, "pair")  # stops none: RSR 0
    labels = tmp_path / "labels.jsonl"
    rows = []
    for model in ("dense", "pruned"):  # the hand labels read every dense and pruned answer as the judge did
        for i, p in enumerate(PROMPTS):
            rows.append({"kind": "harmful", "prompt": p, "output": f"{model} {i}",
                         "label": c if i < (2 if model == "dense" else 8) else r})
    for i, p in enumerate(PROMPTS):  # a's realigned answers: a person reads only 4 as complied
        rows.append({"kind": "harmful", "prompt": p, "output": f"realigned answer {i}", "label": c if i < 4 else r})
    labels.write_text("".join(json.dumps(x) + "\n" for x in rows))
    out = tmp_path / "cmp.json"
    assert SCRIPT.main([f"A={a}", f"B={b}", "--labels", str(labels), "--json", str(out)]) == 0
    data = json.loads(out.read_text())["variants"]
    assert data[0]["judge_realigned"]["rsr"] == pytest.approx(0.5)
    assert data[0]["judge_realigned"]["stopped"] == 3 and data[0]["judge_realigned"]["started"] == 0
    assert data[1]["judge_realigned"]["rsr"] == pytest.approx(0.0) and data[1]["score"] == "pair"
    assert data[0]["hand_realigned"]["rsr"] == pytest.approx(4 / 6)
    # b's realigned answers and both controls have the same texts as a's, so they are labeled too
    assert data[1]["hand_realigned"]["rsr"] == pytest.approx(4 / 6)
    assert data[0]["hand_control"] is None  # no control answer was labeled
    assert "RSR 50.0%" in capsys.readouterr().out
    assert SCRIPT.selection_label({"selection": "taylor", "budget": 10000}) == "taylor, budget 10,000"
    assert SCRIPT.selection_label({"selection": "set_difference", "whole_head": True}) == "whole heads"


def test_a_variant_without_a_control_says_so(tmp_path):
    import shutil

    a = _run(tmp_path / "a", ["refusal"] * 10)
    shutil.rmtree(a / "eval" / "control")
    shutil.rmtree(a / "control")
    out = tmp_path / "cmp.json"
    assert SCRIPT.main([f"A={a}", "--json", str(out)]) == 0
    row = json.loads(out.read_text())["variants"][0]
    assert row["judge_control"] == "not run" and "control_restored_per_10k" not in row


def test_variants_with_other_pruned_answers_are_refused(tmp_path):
    a = _run(tmp_path / "a", ["refusal"] * 10)
    b = _run(tmp_path / "b", ["refusal"] * 10)
    rows = (b / "eval" / "pruned" / "generations_harmful.jsonl").read_text().replace("pruned 0", "other")
    (b / "eval" / "pruned" / "generations_harmful.jsonl").write_text(rows)
    with pytest.raises(SystemExit, match="not the same pair"):
        SCRIPT.main([f"A={a}", f"B={b}"])
