"""scripts/draw_distinct_answers.py: every distinct unlabeled answer once, with the models that gave it."""

from __future__ import annotations

import json

from hsr.testing.scripts import load_script

SCRIPT = load_script("scripts/draw_distinct_answers.py")


def _write(folder, harmful, benign=()):
    folder.mkdir(parents=True)
    for name, rows in (("generations_harmful.jsonl", harmful), ("generations_benign.jsonl", benign)):
        (folder / name).write_text("".join(json.dumps({"prompt": p, "output": o}) + "\n" for p, o in rows))
    return folder


def test_distinct_answers_carry_every_model_and_skip_labeled_ones(tmp_path):
    refuse = "I'm sorry, but I can't assist with that."
    dense = _write(tmp_path / "dense", [("a", refuse), ("b", refuse), ("c", "Sure: 1. do it")], [("x", "Here.")])
    pruned = _write(tmp_path / "pruned", [("a", refuse), ("b", "However, here are tips: 1."), ("c", "Sure: 1. do it")])
    labels = tmp_path / "labels.jsonl"
    labels.write_text(json.dumps({"kind": "harmful", "prompt": "c", "output": "Sure: 1. do it", "label": "complied"}) + "\n")
    out = tmp_path / "drawn.jsonl"
    assert SCRIPT.main([str(out), f"dense={dense}", f"pruned={pruned}", "--round", "5", "--prefix", "r5-t",
                        "--exclude", str(labels)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    got = {(r["kind"], r["prompt"], r["output"]): r["models"] for r in rows}
    assert got == {("harmful", "a", refuse): ["dense", "pruned"], ("harmful", "b", refuse): ["dense"],
                   ("harmful", "b", "However, here are tips: 1."): ["pruned"], ("benign", "x", "Here."): ["dense"]}
    assert sorted(r["id"] for r in rows) == [f"r5-{i:04d}" for i in range(4)]
    assert all(r["source"] == f"r5-t-{r['models'][0]}" and "label" not in r for r in rows)


def test_the_draw_is_seeded(tmp_path):
    dense = _write(tmp_path / "dense", [(str(i), f"answer {i}") for i in range(20)])
    a = SCRIPT.draw([("dense", dense)], set(), 5, "p", seed=1)
    assert a == SCRIPT.draw([("dense", dense)], set(), 5, "p", seed=1)
    assert [r["prompt"] for r in a] != [r["prompt"] for r in SCRIPT.draw([("dense", dense)], set(), 5, "p", seed=2)]


def test_a_later_batch_skips_what_an_earlier_one_drew(tmp_path):
    dense = _write(tmp_path / "dense", [("a", "no"), ("b", "yes: 1.")])
    pruned = _write(tmp_path / "pruned", [("a", "no"), ("b", "sure, 1.")])
    first = tmp_path / "a.jsonl"
    SCRIPT.main([str(first), f"dense={dense}", "--round", "5", "--prefix", "p", "--batch", "a"])
    second = tmp_path / "b.jsonl"
    SCRIPT.main([str(second), f"pruned={pruned}", "--round", "5", "--prefix", "p", "--batch", "b", "--exclude", str(first)])
    rows = [json.loads(line) for line in second.read_text().splitlines()]
    assert [(r["id"], r["prompt"], r["output"]) for r in rows] == [("r5b-0000", "b", "sure, 1.")]
