"""``hsr evaluate`` (alias ``hsr eval``): safety and utility metrics of one model, with raw generations."""

from __future__ import annotations

import argparse
import functools
from pathlib import Path

from .. import distributed
from ..evaluation import EvalConfig
from ..evaluation.judges import check_judge_spec
from ..inputs import Inputs
from ..io import atomic_output_dir
from ..options import add_flags, from_args
from ..pipeline.sections import SHARED
from ..pipeline.stage_bodies import evaluate_stage
from ..report import results_table
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        aliases=["eval"],
        help="attack success rate, over-refusal, perplexity and multiple-choice accuracy of one model",
        description="Evaluate one model. Writes metrics.json, generations_harmful.jsonl and generations_benign.jsonl "
        "(prompt, image, output, verdict) to --out. Data options take a JSONL path, vlguard:ROOT:SPLIT or "
        "builtin:NAME, or 'none' to skip.",
    )
    add_model_args(p)
    add_flags(p, EvalConfig, skip=SHARED)
    p.add_argument("--label", default=None, help="model name in metrics.json and reports (default: the --model folder name)")
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = from_args(args, EvalConfig, fixed={"max_length": args.max_length, "seed": args.seed}, skip=SHARED)
    check_judge_spec(config.judge)
    config.check_data()
    inputs = Inputs()
    inputs.model(args.model)
    config.add_inputs(inputs)
    prepare_output(args, inputs)
    label = args.label or Path(str(args.model)).expanduser().name or str(args.model)
    with distributed.session(args.device) as dist:  # one process, or each rank of torchrun / accelerate launch
        args.device = dist.device
        load = functools.partial(load_from_args, args)
        if not dist.is_main:  # generates its share of the answers; rank 0 judges and writes
            evaluate_stage(load, args.model, config, None, label, progress=False, dist=dist)
            return 0
        with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
            metrics = evaluate_stage(load, args.model, config, tmp, label, progress=args.progress, dist=dist)
    print(results_table([{"label": label, "metrics": metrics, "realign_summary": None}]))
    print(f"Saved to {Path(args.out).expanduser().resolve()}")
    return 0
