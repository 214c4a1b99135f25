"""``hsr report``: compare evaluated models (dense, pruned, realigned, controls) in one report."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..inputs import Inputs
from ..report import HTML_FILE, MD_FILE, build_report, entries_from_dirs, results_table
from ..report.build import ReportError
from .common import add_output_args, prepare_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="markdown + self-contained HTML report comparing evaluated models",
        description="Build report.md, report.html (figures embedded) and PNG figures from `hsr run` directories "
        "and/or `hsr evaluate` output folders.",
    )
    p.add_argument("inputs", nargs="+", metavar="RUN_OR_EVAL_DIR", help="`hsr run` directories or `hsr evaluate` folders")
    p.add_argument("--heads", default=None, help="a heads.json (or its folder) for the head-score heatmap "
                   "(default: the first run directory's heads/heads.json)")
    p.add_argument("--title", default="HSR report", help="report title")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    inputs = Inputs()
    for folder in args.inputs:
        inputs.add(folder, "RUN_OR_EVAL_DIR")
    inputs.add(args.heads, "--heads")
    prepare_output(args, inputs)
    entries, heads = entries_from_dirs(args.inputs)
    if args.heads:
        heads = Path(args.heads).expanduser()
        if heads.is_dir():
            heads = heads / "heads.json"
        if not heads.is_file():
            raise ReportError(f"heads.json not found: {heads}")
    out = build_report(entries, args.out, heads_json=heads, title=args.title)
    print(results_table(entries))
    print(f"Report: {out / MD_FILE} and {out / HTML_FILE}")
    return 0
