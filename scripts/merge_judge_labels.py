"""Merge drawn answers (scripts/sample_judge_labels.py) with their hand labels into one labels file.

    python scripts/merge_judge_labels.py tests/data/judge_labels.jsonl DRAWN.jsonl:LABELED.jsonl [...]

LABELED holds one ``{"id", "label", "note"}`` per drawn row. Every drawn row must have exactly one
label from the outcomes of its kind (docs/judging.md), or the merge stops and names the row.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from hsr.evaluation.outcomes import OUTCOMES


def merge(pairs: list[tuple[Path, Path]]) -> list[dict]:
    out = []
    for drawn, labeled in pairs:
        labels = {}
        for line in labeled.read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                if row["id"] in labels:
                    raise SystemExit(f"{labeled}: {row['id']} labeled twice")
                labels[row["id"]] = row
        for line in drawn.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            lab = labels.pop(row["id"], None)
            if lab is None or lab["label"] not in OUTCOMES[row["kind"]]:
                raise SystemExit(f"{labeled}: {row['id']} has no valid {row['kind']} label ({lab})")
            out.append({**row, "label": lab["label"], "note": lab.get("note", "")})
        if labels:
            raise SystemExit(f"{labeled}: labels for rows that were not drawn: {sorted(labels)[:5]}")
    return out


def main(argv: list[str]) -> int:
    target, *specs = argv
    rows = merge([tuple(Path(p) for p in s.split(":", 1)) for s in specs])
    Path(target).write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} labeled rows to {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
