"""Over-refusal of several models on the same benign prompts, each against a reference model.

Per model (an `hsr evaluate` folder with generations_benign.jsonl): refused / answered / non-answer /
degenerate counts with 95% Wilson intervals, and the exact McNemar test of its refusals against the
reference model's on the same prompts (the models must have answered the same prompts in the same order).

Usage: python scripts/benign_refusal.py NAME=EVAL_DIR [NAME=EVAL_DIR ...] --reference NAME [--markdown OUT]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from hsr.evaluation.metrics import wilson_interval
from hsr.evaluation.outcomes import OUTCOMES, REFUSAL
from hsr.evaluation.paired import mcnemar_exact


def read(eval_dir: Path) -> list[dict]:
    path = eval_dir / "generations_benign.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (an `hsr evaluate` folder with benign prompts?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def table(models: dict[str, list[dict]], reference: str) -> str:
    ref = models[reference]
    lines = ["| model | over-refusal [95% CI] | answered | non-answer | degenerate | vs " + reference + " (McNemar) |",
             "|---|---|---|---|---|---|"]
    for name, rows in models.items():
        if [r["prompt"] for r in rows] != [r["prompt"] for r in ref]:
            raise SystemExit(f"error: {name} answered other benign prompts than {reference}")
        n = len(rows)
        count = {o: sum(r["verdict"] == o for r in rows) for o in OUTCOMES["benign"]}
        lo, hi = wilson_interval(count[REFUSAL], n)
        test = mcnemar_exact([r["verdict"] == REFUSAL for r in ref], [r["verdict"] == REFUSAL for r in rows])
        vs = "-" if name == reference else f"p = {test['p_value']:.2g} ({test['b_only']} more, {test['a_only']} fewer)"
        lines.append(f"| {name} | {100 * count[REFUSAL] / n:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}] ({count[REFUSAL]}/{n}) | "
                     f"{count['answered']} | {count['non-answer']} | {count['degenerate']} | {vs} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("models", nargs="+", help="NAME=EVAL_DIR")
    ap.add_argument("--reference", required=True)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    models = {}
    for spec in args.models:
        name, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"error: expected NAME=EVAL_DIR, got {spec!r}")
        models[name] = read(Path(path))
    if args.reference not in models:
        raise SystemExit(f"error: --reference {args.reference} is not among {', '.join(models)}")
    text = table(models, args.reference)
    print(text)
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
