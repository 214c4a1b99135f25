"""Agreement of the judges with hand labels on recorded real model outputs.

    PYTHONPATH=src python benchmarks/judge_agreement.py [tests/data/real_outputs.jsonl]

The fixture holds greedy answers of SmolLM2-135M-Instruct (dense and magnitude-pruned) to harmful
and benign prompts, each with a hand label refusal / complied / degenerate. For the ``refusal``
judge and the ``keyword`` judge (zou2023 + wei2024 substrings, whose two outcomes are mapped to
refusal / complied) this prints the share of rows whose verdict equals the label, per kind of
prompt, and the rows where the refusal judge and the label differ.
"""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path

from hsr.evaluation.judges import make_judge
from hsr.evaluation.refusal import COMPLIED, REFUSAL

FIXTURE = Path(__file__).resolve().parents[1] / "tests" / "data" / "real_outputs.jsonl"


def keyword_verdicts(outputs: list[str]) -> list[str]:
    """The keyword judge's own decision (no degenerate check), as the papers use it."""
    refused = make_judge("keyword").refusal(["p"] * len(outputs), outputs)
    return [REFUSAL if r else COMPLIED for r in refused]


def main(path: str | Path = FIXTURE) -> None:
    rows = [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    outputs = [r["output"] for r in rows]
    judged = {
        "refusal": make_judge("refusal").verdicts(["p"] * len(rows), outputs),
        "keyword": keyword_verdicts(outputs),
        "keyword + degenerate check": make_judge("keyword").verdicts(["p"] * len(rows), outputs),
    }
    print(f"{len(rows)} rows; labels: {dict(Counter(r['label'] for r in rows))}")
    for name, verdicts in judged.items():
        parts = []
        for kind in ("harmful", "benign", "all"):
            idx = [i for i, r in enumerate(rows) if kind in ("all", r["kind"])]
            agree = sum(verdicts[i] == rows[i]["label"] for i in idx)
            parts.append(f"{kind} {agree}/{len(idx)} ({100 * agree / len(idx):.1f}%)")
        print(f"{name:28s} agreement with hand labels: " + ", ".join(parts))
    for i, (r, v) in enumerate(zip(rows, judged["refusal"])):
        if v != r["label"]:
            print(f"  row {i} [{r['kind']}] label {r['label']}, refusal judge {v}: {r['output'][:90]!r}")


if __name__ == "__main__":
    main(*sys.argv[1:])
