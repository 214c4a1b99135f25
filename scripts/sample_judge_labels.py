"""Draw answers for hand labeling from evaluation folders (tests/data/judge_labels.jsonl was made this way).

    python scripts/sample_judge_labels.py OUT.jsonl SOURCE=EVAL_DIR:N_HARMFUL:N_BENIGN [...] [--seed 0]

From each evaluation folder (``generations_harmful.jsonl`` / ``generations_benign.jsonl``) it draws, with
a seeded shuffle, up to N_HARMFUL and N_BENIGN answers whose text differs from every answer already
drawn from that source (a model's stereotyped refusals would otherwise fill the sample), and assigns
each to the ``dev`` or ``test`` half, alternating within each (source, kind) so that both halves
cover every model. Rows carry no verdict: the judge's opinion must not steer the labeler. The labels
are added by hand, by the rubric in docs/judging.md.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

FILES = {"harmful": "generations_harmful.jsonl", "benign": "generations_benign.jsonl"}


def _rows(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def sample(sources: list[tuple[str, Path, int, int]], seed: int = 0) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for name, folder, n_harmful, n_benign in sources:
        for kind, n in (("harmful", n_harmful), ("benign", n_benign)):
            rows = _rows(folder / FILES[kind])
            random.Random(f"{seed}:{name}:{kind}").shuffle(rows)
            seen: set[str] = set()
            picked = []
            for r in rows:
                text = " ".join(r["output"].split()).lower()
                if text in seen:
                    continue
                seen.add(text)
                picked.append(r)
                if len(picked) == n:
                    break
            for i, r in enumerate(picked):
                out.append({"id": f"{name}/{kind}/{i}", "split": "dev" if i % 2 == 0 else "test", "source": name,
                            "kind": kind, "prompt": r["prompt"], "output": r["output"]})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", nargs="+", help="NAME=EVAL_DIR:N_HARMFUL:N_BENIGN")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sources = []
    for spec in args.sources:
        name, rest = spec.split("=", 1)
        folder, n_h, n_b = rest.rsplit(":", 2)
        sources.append((name, Path(folder), int(n_h), int(n_b)))
    rows = sample(sources, args.seed)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    print(f"wrote {len(rows)} rows to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
