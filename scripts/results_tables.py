"""Write the README's result tables and docs/results/default-run.json from a finished `hsr run` folder.

    python scripts/results_tables.py RUN_DIR_OR_EVAL_DIRS... [--json docs/results/default-run.json] [--readme README.md]

For every evaluated model: the count of each outcome (harmful: complied / refusal / non-answer /
degenerate; benign: answered / refusal / non-answer / degenerate) with its 95% Wilson interval,
perplexity, multiple-choice accuracy, restored parameters per 10k, and, paired on the same prompts,
RSR and McNemar against the pruned model (pruned against dense). The JSON also names the git commit
and the machine it was measured on. With ``--readme``, the text between the markers
``<!-- results:NAME:start -->`` and ``<!-- results:NAME:end -->`` is replaced by the tables (NAME is
the JSON file's stem), so the README always shows what the script last measured. ``--readme`` may be
given more than once (the README and the experiment pages under docs/experiments/): each block is
replaced in every given file that holds it, and a block that none of them holds is an error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from hsr import __version__
from hsr.evaluation.outcomes import METRIC_KEYS, OUTCOMES
from hsr.io import write_json
from hsr.report import entries_from_dirs, results_table
from hsr.report.paired import paired_summary


def git_commit(repo: Path) -> str | None:
    """The commit checked out in ``repo`` (with ``+dirty`` when tracked files under src/ differ)."""
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "src"], cwd=repo,
                               capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return commit + ("+dirty" if dirty else "")


def machine() -> dict[str, Any]:
    import torch

    return {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
            "cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}


def model_record(entry: dict[str, Any]) -> dict[str, Any]:
    m = entry["metrics"]
    record: dict[str, Any] = {"judge": m.get("judge")}
    for kind in OUTCOMES:
        record[kind] = {o: m.get(METRIC_KEYS[(kind, o)]) for o in OUTCOMES[kind]}
    record["perplexity"] = m.get("perplexity")
    record["mcq_accuracy"] = m.get("mcq_accuracy")
    summary = entry.get("realign_summary") or {}
    record["restored_params"] = summary.get("restored_params")
    frac = summary.get("restored_fraction")
    record["restored_per_10k"] = None if frac is None else 1e4 * float(frac)
    return record


def results(inputs: list[Path]) -> tuple[dict[str, Any], str]:
    """The JSON record and the markdown tables of one run folder (or of evaluation folders)."""
    entries, _ = entries_from_dirs(inputs)
    paired = paired_summary(entries)
    models = {e["label"]: model_record(e) for e in entries}
    if paired.get("available"):
        models["pruned"]["vs_dense"] = paired["pruning"]
        for c in paired["comparisons"]:
            models[c["label"]]["rsr"] = c["rsr"]
            models[c["label"]]["vs_pruned"] = c["difference"]
    record = {
        "inputs": [str(p.resolve()) for p in inputs],
        "git_commit": git_commit(Path(__file__).resolve().parents[1]),
        "hsr_version": __version__,
        "measured": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "paired_n": paired.get("n"),
        "models": models,
    }
    return record, results_table(entries, paired)


def replace_block(text: str, name: str, body: str) -> str:
    """``text`` with the block between the ``results:NAME`` markers replaced by ``body``."""
    start, end = f"<!-- results:{name}:start -->", f"<!-- results:{name}:end -->"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end), re.DOTALL)
    if not pattern.search(text):
        raise SystemExit(f"README has no {start} ... {end} block")
    return pattern.sub(lambda _: f"{start}\n{body}\n{end}", text)


def has_block(text: str, name: str) -> bool:
    return f"<!-- results:{name}:start -->" in text and f"<!-- results:{name}:end -->" in text


def replace_blocks(paths: list[Path], blocks: dict[str, str]) -> None:
    """Replace every ``results:NAME`` block in each of ``paths`` that holds it; each block must be in one at least."""
    texts = {path: path.read_text(encoding="utf-8") for path in paths}
    for name, body in blocks.items():
        holders = [path for path, text in texts.items() if has_block(text, name)]
        if not holders:
            raise SystemExit(f"none of {', '.join(map(str, paths))} has a <!-- results:{name}:start --> ... "
                             f"<!-- results:{name}:end --> block")
        for path in holders:
            texts[path] = replace_block(texts[path], name, body)
    for path, text in texts.items():
        path.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", type=Path, nargs="+", help="an `hsr run` folder, or evaluation folders")
    parser.add_argument("--json", type=Path, default=Path("docs/results/default-run.json"))
    parser.add_argument("--readme", type=Path, action="append", default=[], help="README (or docs page) to update "
                        "between the results markers; repeat for several files")
    parser.add_argument("--sweep", action="append", default=[], metavar="NAME=SWEEP_MD",
                        help="also put a sweep report's sweep.md (e.g. from `hsr judge SWEEP --out OUT`: OUT/report/"
                        "sweep.md) between the results:NAME markers of --readme")
    args = parser.parse_args(argv)
    record, table = results(args.inputs)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.json, record)
    commit = (record["git_commit"] or "unknown")[:10]
    body = f"{table}\n\n_Measured on commit `{commit}` ({record['machine']['cpu_count']} CPU cores, torch " \
           f"{record['machine']['torch']}); written by `scripts/results_tables.py` into `{args.json}`._"
    if args.readme:
        blocks = {args.json.stem: body}
        for spec in args.sweep:
            name, path = spec.split("=", 1)
            table = Path(path).read_text(encoding="utf-8").split("\n", 2)[2].split("![sweep]")[0].strip()
            blocks[name] = f"{table}\n\n_From `{path}`, commit `{commit}`._"
        replace_blocks(args.readme, blocks)
    print(body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
