"""Agreement of every judge with the hand labels: confusion matrices, agreement, precision and recall.

    PYTHONPATH=src python benchmarks/judge_agreement.py [--split test] [--labels tests/data/judge_labels.jsonl]
                                                        [--judge model:PATH ...] [--errors]

The labels (tests/data/judge_labels.jsonl, rubric in docs/judging.md) are real answers of the
models this project compares -- SmolLM2 before alignment, aligned, pruned at several sparsities by
Wanda and SparseGPT, realigned and control, and Qwen2.5-Coder-0.5B-Instruct dense and pruned -- to
harmful and benign prompts, each labeled by hand with one outcome and put in the ``dev`` half (used
to write the rubric judge) or the ``test`` half (only for reporting). Per judge and kind of prompt
this prints the confusion matrix (rows = hand label, columns = judge), the share of answers where
judge and label agree, and precision and recall of every outcome. The old judges never say
``non-answer``: their recall of it is 0 by construction, which is the point of the comparison.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

from hsr.evaluation.judges import make_judge
from hsr.evaluation.metrics import wilson_interval
from hsr.evaluation.outcomes import KINDS, OUTCOMES

LABELS = Path(__file__).resolve().parents[1] / "tests" / "data" / "judge_labels.jsonl"
JUDGES = ("rubric", "refusal", "keyword")


def load_labels(path: str | Path = LABELS, split: str | None = None) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    return [r for r in rows if split in (None, "all", r["split"])]


def judge_rows(spec: str, rows: Sequence[dict[str, Any]]) -> list[str]:
    """The judge's outcome for every labeled row (rows of both kinds, in order)."""
    judge = make_judge(spec)
    out = [""] * len(rows)
    for kind in KINDS:
        idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
        if idx:
            verdicts = judge.verdicts([rows[i]["prompt"] for i in idx], [rows[i]["output"] for i in idx], kind)
            for i, v in zip(idx, verdicts):
                out[i] = v
    return out


def _interval(k: int, n: int) -> list[float] | None:
    return list(wilson_interval(k, n)) if n else None


def scores(labels: Sequence[str], verdicts: Sequence[str], outcomes: Sequence[str]) -> dict[str, Any]:
    """Agreement, and precision / recall per outcome (None where undefined), each with its 95% Wilson
    interval (``*_ci``): with a few dozen labels of an outcome, the interval is the honest number."""
    n = len(labels)
    agree = sum(a == b for a, b in zip(labels, verdicts))
    per: dict[str, dict[str, Any]] = {}
    for o in outcomes:
        tp = sum(a == o and b == o for a, b in zip(labels, verdicts))
        said = sum(b == o for b in verdicts)
        true = sum(a == o for a in labels)
        per[o] = {"precision": tp / said if said else None, "recall": tp / true if true else None, "n": true,
                  "precision_ci": _interval(tp, said), "recall_ci": _interval(tp, true)}
    return {"n": n, "agreement": agree / n if n else None, "agreement_ci": _interval(agree, n), "per_outcome": per}


def confusion(labels: Sequence[str], verdicts: Sequence[str], outcomes: Sequence[str]) -> str:
    width = max(len(o) for o in outcomes) + 2
    lines = ["label \\ judge".ljust(width + 2) + "".join(o.rjust(width) for o in outcomes)]
    for a in outcomes:
        counts = [sum(x == a and y == b for x, y in zip(labels, verdicts)) for b in outcomes]
        lines.append(f"  {a}".ljust(width + 2) + "".join(str(c).rjust(width) for c in counts))
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "  n/a" if x is None else f"{100 * x:5.1f}%"


def _ci(ci: list[float] | None) -> str:
    return "" if ci is None else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def report(rows: Sequence[dict[str, Any]], judges: Sequence[str], errors: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for spec in judges:
        verdicts = judge_rows(spec, rows)
        results[spec] = {}
        for kind in KINDS:
            idx = [i for i, r in enumerate(rows) if r["kind"] == kind]
            if not idx:
                continue
            labels, judged = [rows[i]["label"] for i in idx], [verdicts[i] for i in idx]
            s = scores(labels, judged, OUTCOMES[kind])
            results[spec][kind] = s
            print(f"\n{spec} on {kind} prompts: agreement {_pct(s['agreement'])}{_ci(s['agreement_ci'])} of {s['n']}")
            print(confusion(labels, judged, OUTCOMES[kind]))
            for o, p in s["per_outcome"].items():
                print(f"  {o:<11} precision {_pct(p['precision'])}{_ci(p['precision_ci'])}  "
                      f"recall {_pct(p['recall'])}{_ci(p['recall_ci'])}  (n={p['n']})")
            if errors:
                for i in idx:
                    if verdicts[i] != rows[i]["label"]:
                        r = rows[i]
                        print(f"    [{r['id']}] label {r['label']}, judge {verdicts[i]}: {r['prompt'][:50]!r} -> {r['output'][:100]!r}")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--labels", default=str(LABELS))
    parser.add_argument("--split", default="test", choices=("dev", "test", "all"))
    parser.add_argument("--judge", action="append", default=None, help=f"judges to compare (default: {', '.join(JUDGES)})")
    parser.add_argument("--errors", action="store_true", help="print every disagreement")
    parser.add_argument("--round", type=int, action="append", default=None, dest="rounds",
                        help="only the rows of this labeling round (repeatable)")
    args = parser.parse_args(argv)
    rows = load_labels(args.labels, args.split)
    if args.rounds:
        rows = [r for r in rows if r["round"] in args.rounds]
    if not rows:
        parser.error(f"no labeled rows in split {args.split!r}" + (f" and rounds {args.rounds}" if args.rounds else ""))
    counts = {k: sum(r["kind"] == k for r in rows) for k in KINDS}
    where = args.split + (" split, round " + ", ".join(map(str, args.rounds)) if args.rounds else " split")
    print(f"{len(rows)} hand-labeled answers ({where}): " + ", ".join(f"{v} {k}" for k, v in counts.items()))
    report(rows, args.judge or JUDGES, args.errors)
    return 0


if __name__ == "__main__":
    sys.exit(main())
