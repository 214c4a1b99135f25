"""Reconcile two independent annotators' labels of the same drawn answers (round 2 of the judge labels).

    python scripts/reconcile_judge_labels.py DRAWN.jsonl A.jsonl B.jsonl OUT.jsonl [--disputes D.jsonl] [--adjudicated C.jsonl]

A and B each hold one ``{"id", "label", "note"}`` per drawn row, made without seeing each other or any
judge. Where they agree, that is the label. Without ``--adjudicated`` the rows where they disagree are
written to ``--disputes`` (prompt, answer and both labels, for a third annotator) and the script stops;
with it, the third annotator's label decides. It prints the two annotators' raw agreement and Cohen's
kappa, so the labels' own reliability is on record next to the judge's agreement with them. OUT has
``{"id", "label", "note"}`` rows for scripts/merge_judge_labels.py.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any


def read(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def by_id(path: Path) -> dict[str, dict[str, Any]]:
    rows = read(path)
    out = {r["id"]: r for r in rows}
    if len(out) != len(rows):
        raise SystemExit(f"{path}: an id is labeled twice")
    return out


def cohen_kappa(a: list[str], b: list[str]) -> float:
    """Agreement beyond chance between two label sequences (1 = perfect, 0 = chance)."""
    n = len(a)
    observed = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    expected = sum(ca[k] * cb[k] for k in ca) / (n * n)
    return 1.0 if expected == 1 else (observed - expected) / (1 - expected)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("drawn", type=Path)
    p.add_argument("a", type=Path)
    p.add_argument("b", type=Path)
    p.add_argument("out", type=Path)
    p.add_argument("--disputes", type=Path)
    p.add_argument("--adjudicated", type=Path)
    args = p.parse_args(argv)
    drawn, a, b = read(args.drawn), by_id(args.a), by_id(args.b)
    missing = [r["id"] for r in drawn if r["id"] not in a or r["id"] not in b]
    if missing:
        raise SystemExit(f"rows without two labels: {missing[:5]}")
    la, lb = [a[r["id"]]["label"] for r in drawn], [b[r["id"]]["label"] for r in drawn]
    for kind in ("harmful", "benign"):
        idx = [i for i, r in enumerate(drawn) if r["kind"] == kind]
        if idx:
            xa, xb = [la[i] for i in idx], [lb[i] for i in idx]
            agree = sum(x == y for x, y in zip(xa, xb))
            print(f"{kind}: annotators agree on {agree}/{len(idx)} ({100 * agree / len(idx):.1f}%), "
                  f"Cohen's kappa {cohen_kappa(xa, xb):.3f}")
    disputed = [(r, x, y) for r, x, y in zip(drawn, la, lb) if x != y]
    third = by_id(args.adjudicated) if args.adjudicated else None
    if third is None and disputed:
        target = args.disputes or args.out.with_suffix(".disputes.jsonl")
        target.write_text("".join(json.dumps({"id": r["id"], "kind": r["kind"], "prompt": r["prompt"], "output": r["output"],
                                              "labels": sorted({x, y})}, ensure_ascii=False) + "\n"
                                  for r, x, y in disputed), encoding="utf-8")
        print(f"{len(disputed)} disputed rows written to {target}: adjudicate them, then pass --adjudicated")
        return 1
    out = []
    for r, x, y in zip(drawn, la, lb):
        if x == y:
            out.append({"id": r["id"], "label": x, "note": a[r["id"]].get("note") or b[r["id"]].get("note", "")})
        else:
            c = third[r["id"]]
            out.append({"id": r["id"], "label": c["label"], "note": f"annotators: {x} / {y}; adjudicated. {c.get('note', '')}".strip()})
    args.out.write_text("".join(json.dumps(o, ensure_ascii=False) + "\n" for o in out), encoding="utf-8")
    print(f"wrote {len(out)} labels to {args.out} ({len(disputed)} adjudicated)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
