"""Draw every distinct answer of some evaluation folders that no label covers yet (rounds 3-5 of the judge labels).

    python scripts/draw_distinct_answers.py OUT.jsonl NAME=EVAL_DIR [...] --round 5 --prefix r5-qwen-test \
        [--exclude tests/data/judge_labels.jsonl] [--seed 0]

Why every distinct answer rather than a sample: a run's headline rates can then be recomputed from the hand
labels alone (each generation maps to the label of its distinct answer), and the judge's agreement is
measured on the answers that decide its rates. Stereotyped answers ("I'm sorry, but I can't assist with
that.") appear once per prompt kind, with every model that gave them in ``models``. Answers whose
(prompt, answer) already has a label in ``--exclude`` are left out, so no answer is labeled twice. Rows are
shuffled with a seed and get opaque ids (``r5-0000``, or ``r5b-0000`` with ``--batch b`` when a round is
drawn in batches: pass the earlier batches' files to ``--exclude`` too): an annotator cannot tell which model wrote an
answer. Rows carry no verdict: the judge's opinion must not steer the labeler.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path
from typing import Any

from hsr.evaluation.rejudge import FILES, read_rows


def answer_key(kind: str, prompt: str, output: str) -> tuple[str, str, str]:
    """Exact text, as scripts/compare_realign.py and scripts/benign_refusal.py look labels up."""
    return kind, prompt, output


def _rows(path: Path) -> list[dict[str, Any]]:
    """An eval folder may lack one kind's file (benign none): no rows, not an error."""
    return read_rows(path) if path.is_file() else []


def draw(sources: list[tuple[str, Path]], exclude: set[tuple[str, str, str]], round_: int, prefix: str,
         seed: int = 0, batch: str = "") -> list[dict[str, Any]]:
    """One row per distinct (kind, prompt, exact answer) over all sources, minus ``exclude``, shuffled."""
    found: dict[tuple[str, str, str], dict[str, Any]] = {}
    for name, folder in sources:
        for kind, file in FILES.items():
            for r in _rows(folder / file):
                key = answer_key(kind, r["prompt"], r["output"])
                if key in exclude:
                    continue
                row = found.setdefault(key, {"kind": kind, "prompt": r["prompt"], "output": r["output"],
                                             "models": []})
                if name not in row["models"]:
                    row["models"].append(name)
    rows = list(found.values())
    random.Random(seed).shuffle(rows)
    return [{"id": f"r{round_}{batch}-{i:04d}", "source": f"{prefix}-{r['models'][0]}", "models": r["models"],
             "kind": r["kind"], "prompt": r["prompt"], "output": r["output"]} for i, r in enumerate(rows)]


def labeled_keys(path: Path) -> set[tuple[str, str, str]]:
    return {answer_key(r["kind"], r["prompt"], r["output"]) for r in _rows(path)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("sources", nargs="+", help="NAME=EVAL_DIR (an `hsr evaluate` folder or a run's eval/MODEL)")
    parser.add_argument("--round", type=int, required=True, dest="round_")
    parser.add_argument("--prefix", required=True, help="source prefix, e.g. r5-qwen-test")
    parser.add_argument("--exclude", type=Path, action="append", default=[], help="labels whose answers to skip")
    parser.add_argument("--batch", default="", help="a letter for ids when a round is drawn in batches (r5a-0000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sources = []
    for spec in args.sources:
        name, sep, folder = spec.partition("=")
        if not sep or not Path(folder).is_dir():
            parser.error(f"{spec!r}: expected NAME=EVAL_DIR with an existing folder")
        sources.append((name, Path(folder)))
    exclude: set[tuple[str, str, str]] = set()
    for path in args.exclude:
        exclude |= labeled_keys(path)
    rows = draw(sources, exclude, args.round_, args.prefix, args.seed, args.batch)
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    kinds = {k: sum(r["kind"] == k for r in rows) for k in FILES}
    print(f"wrote {len(rows)} distinct answers ({kinds['harmful']} harmful, {kinds['benign']} benign) to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
