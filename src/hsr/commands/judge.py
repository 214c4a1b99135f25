"""``hsr judge``: re-judge recorded generations (a run, an evaluation folder or a JSONL) with any judge."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation.judges import DEFAULT_JUDGE, check_judge_spec, make_judge
from ..evaluation.outcomes import HARMFUL, KINDS
from ..evaluation.rejudge import RejudgeError, dense_entry, rejudge, sweep_points
from ..inputs import Inputs
from ..io import atomic_output_dir
from ..report import build_sweep_report, results_table
from .common import add_output_args, prepare_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "judge",
        help="re-judge recorded generations with any judge, without generating again",
        description="Give every recorded answer one outcome with --judge and recompute the rates. INPUT is an `hsr "
        "evaluate` folder, an `hsr run`/`hsr sweep` folder (each eval/<label>), or a JSONL of prompt/output rows "
        "(optional kind: harmful or benign). The copy goes to --out with the input's layout (the input is not "
        "changed); `hsr report OUT` then shows it.",
    )
    p.add_argument("input", metavar="INPUT", help="run folder, evaluation folder, or JSONL of prompt/output rows")
    p.add_argument("--judge", default=DEFAULT_JUDGE, help="rubric (default), refusal, keyword, keyword:LIST[+LIST], "
                   "model:PATH[@guard|@harmbench] or labels:PATH (hand labels, e.g. tests/data/judge_labels.jsonl)")
    p.add_argument("--kind", choices=KINDS, default=HARMFUL, help="kind of JSONL rows without a 'kind' field")
    p.add_argument("--device", default="cpu", help="device of a model judge")
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    check_judge_spec(args.judge)
    source = Path(args.input).expanduser()
    if not source.exists():
        raise RejudgeError(f"{source} not found: give an evaluation folder, a run folder or a JSONL file.")
    inputs = Inputs()
    inputs.add(source, "INPUT")
    inputs.judge(args.judge)
    prepare_output(args, inputs)
    judge = make_judge(args.judge, device=args.device)
    with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
        done = rejudge(judge, source, tmp, default_kind=args.kind)
        points = sweep_points(tmp)
        if points:  # a sweep: its report is rebuilt from the re-judged points (hsr report reads single runs)
            build_sweep_report(dense_entry(tmp), points, tmp / "report", title=f"HSR sparsity sweep, re-judged with {judge.name}")
    print(results_table([{"label": r.label, "metrics": r.metrics, "realign_summary": None} for r in done]))
    print(f"Re-judged {len(done)} evaluation(s) with {judge.name}; saved to {Path(args.out).expanduser().resolve()}")
    return 0
