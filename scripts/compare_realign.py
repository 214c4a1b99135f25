"""Compare HSR variants (head score x restore selection) that share one dense and one pruned model.

Each variant is an `hsr run` folder whose pruned stage is the same model (copied run folders with a
different `heads.score` or `realign.selection`). Per variant: restored weights per 10k, the realigned and
control models' ASR, RSR with a paired-bootstrap interval, and the exact McNemar p-value against the
pruned model, all on the same harmful prompts. With ``--labels`` (tests/data/judge_labels.jsonl), the same
statistics are also computed from the hand labels of the answers, where every answer of the compared
models has one (matched on prompt and answer text): the judge's numbers next to a person's reading.

Usage: python scripts/compare_realign.py NAME=RUN [NAME=RUN ...] [--labels L] [--json OUT] [--markdown OUT]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from hsr.evaluation.outcomes import COMPLIED
from hsr.evaluation.paired import mcnemar_exact, restoration_rate_interval


def read_answers(eval_dir: Path) -> list[dict[str, Any]]:
    """The harmful-prompt generations of one evaluated model, in prompt order."""
    path = eval_dir / "generations_harmful.jsonl"
    if not path.is_file():
        raise SystemExit(f"error: {path} not found (is {eval_dir.parent.parent} a finished hsr run?)")
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def hand_labels(path: Path | None) -> dict[tuple[str, str], str]:
    """(prompt, answer) -> hand label, harmful rows only."""
    if path is None:
        return {}
    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return {(r["prompt"], r["output"]): r["label"] for r in rows if r["kind"] == "harmful"}


def complied(answers: list[dict[str, Any]], labels: dict[tuple[str, str], str] | None) -> list[bool] | None:
    """Attack success per prompt: the judge's verdict, or the hand label (None where one is missing)."""
    if labels is None:
        return [a["verdict"] == COMPLIED for a in answers]
    got = [labels.get((a["prompt"], a["output"])) for a in answers]
    return None if any(g is None for g in got) else [g == COMPLIED for g in got]


def rsr_cell(dense: list[bool], pruned: list[bool], model: list[bool]) -> dict[str, Any]:
    rsr = restoration_rate_interval(dense, pruned, model)
    test = mcnemar_exact(pruned, model)
    return {"asr": sum(model) / len(model), "complied": sum(model), "n": len(model), "rsr": rsr["value"],
            "rsr_ci": [rsr["ci_low"], rsr["ci_high"]], "mcnemar_p": test["p_value"],
            "stopped": test["a_only"], "started": test["b_only"]}


def selection_label(config: dict[str, Any]) -> str:
    """The restore rule in words: the selection, whole heads, a parameter budget."""
    parts = ["whole heads" if config.get("whole_head") else config.get("selection", "set_difference")]
    if config.get("budget"):
        parts.append(f"budget {config['budget']:,}")
    return ", ".join(parts)


def variant_row(name: str, run: Path, evals: Path, labels: dict[tuple[str, str], str],
                base: dict[str, list[dict]]) -> dict:
    summary = json.loads((run / "realigned" / "summary.json").read_text(encoding="utf-8"))
    heads_stage = json.loads((run / "heads" / "stage.json").read_text(encoding="utf-8"))
    row: dict[str, Any] = {
        "variant": name, "run": str(run), "score": heads_stage["settings"].get("score", "ships"),
        "selection": selection_label(summary["config"]),
        "heads": [f"L{h['layer']}.H{h['head']}" for h in summary["heads"]],
        "restored_per_10k": summary["restored_per_ten_thousand"],
    }
    control_summary = run / "control" / "summary.json"  # absent with realign.control: false
    if control_summary.is_file():
        row["control_restored_per_10k"] = json.loads(control_summary.read_text())["restored_per_ten_thousand"]
    answers = {m: read_answers(evals / m) for m in ("dense", "pruned", "realigned", "control")
               if (evals / m / "generations_harmful.jsonl").is_file()}
    for m in ("dense", "pruned"):
        if [a["output"] for a in answers[m]] != [a["output"] for a in base[m]]:
            raise SystemExit(f"error: {run} has other {m} answers than the first variant: not the same pair")
    for source, table in (("judge", None), ("hand", labels or None)):
        if source == "hand" and not labels:
            continue
        d, p = complied(answers["dense"], table), complied(answers["pruned"], table)
        for m in ("realigned", "control"):
            if m not in answers:
                row[f"{source}_{m}"] = "not run"
                continue
            got = complied(answers[m], table)
            if d is None or p is None or got is None:
                row[f"{source}_{m}"] = None  # an answer without a hand label
                continue
            row[f"{source}_{m}"] = rsr_cell(d, p, got)
        if d is not None and p is not None:
            row[f"{source}_dense_asr"], row[f"{source}_pruned_asr"] = sum(d) / len(d), sum(p) / len(p)
    return row


def fmt_rsr(cell: dict | str | None) -> str:
    if cell is None:
        return "n/a (unlabeled answers)"
    if isinstance(cell, str):
        return cell
    lo, hi = cell["rsr_ci"]
    ci = f" [{100 * lo:.1f}, {100 * hi:.1f}]" if lo is not None else ""
    rsr = "undefined" if cell["rsr"] is None else f"{100 * cell['rsr']:.1f}%"
    return (f"{cell['complied']}/{cell['n']}; RSR {rsr}{ci}; p = {cell['mcnemar_p']:.3g} "
            f"({cell['stopped']} stopped, {cell['started']} started)")


def markdown(rows: list[dict], commit: str) -> str:
    sources = ["judge"] + (["hand"] if any("hand_realigned" in r for r in rows) else [])
    lines = []
    for source in sources:
        first = rows[0]
        lines.append(f"**{'rubric judge' if source == 'judge' else 'hand labels'}**: dense complied "
                     f"{100 * first.get(f'{source}_dense_asr', float('nan')):.1f}%, pruned "
                     f"{100 * first.get(f'{source}_pruned_asr', float('nan')):.1f}%")
        lines.append("")
        lines.append("| variant | score | selection | restored per 10k (control) | realigned: complied; RSR [95% CI]; McNemar vs pruned | control: the same |")
        lines.append("|---|---|---|---|---|---|")
        for r in rows:
            ctrl = r.get("control_restored_per_10k")
            lines.append(f"| {r['variant']} | {r['score']} | {r['selection']} | {r['restored_per_10k']:.3f}"
                         f"{f' ({ctrl:.3f})' if ctrl is not None else ''} | {fmt_rsr(r.get(f'{source}_realigned'))} | "
                         f"{fmt_rsr(r.get(f'{source}_control'))} |")
        lines.append("")
    lines.append(f"_Written by `scripts/compare_realign.py` on commit `{commit}`._")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("variants", nargs="+", help="NAME=RUN_FOLDER, or NAME=RUN_FOLDER,JUDGED where JUDGED is the "
                    "--out of `hsr judge RUN_FOLDER` (its eval/ is read instead of the run's)")
    ap.add_argument("--labels", type=Path, help="hand labels (JSONL with prompt, output, kind, label)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--markdown", type=Path)
    args = ap.parse_args(argv)
    variants = []
    for spec in args.variants:
        name, sep, paths = spec.partition("=")
        run, _, judged = paths.partition(",")
        evals = Path(judged) / "eval" if judged else Path(run) / "eval"
        if not sep or not Path(run).is_dir() or not evals.is_dir():
            raise SystemExit(f"error: expected NAME=RUN_FOLDER[,JUDGED] with existing folders, got {spec!r}")
        variants.append((name, Path(run), evals))
    base = {m: read_answers(variants[0][2] / m) for m in ("dense", "pruned")}
    labels = hand_labels(args.labels)
    rows = [variant_row(name, run, evals, labels, base) for name, run, evals in variants]
    commit = subprocess.run(["git", "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True,
                            cwd=Path(__file__).parent).stdout.strip() or "unknown"
    text = markdown(rows, commit)
    print(text)
    if args.json:
        args.json.write_text(json.dumps({"commit": commit, "variants": rows}, indent=2) + "\n", encoding="utf-8")
    if args.markdown:
        args.markdown.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
