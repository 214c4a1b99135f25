"""``hsr evaluate`` (alias ``hsr eval``): safety and utility metrics of one model, with raw generations."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import distributed
from ..errors import ConfigError
from ..evaluation import SUITES, EvalConfig, evaluate_model
from ..evaluation.judges import REFUSAL_LISTS, check_judge_spec
from ..evaluation.mcq import METHODS as MCQ_METHODS
from ..io import atomic_output_dir
from ..report import results_table
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output

_DEFAULTS = EvalConfig()


def _data(value: str | None) -> str | None:
    """'none' (or an empty string) switches a data set off."""
    return None if value is None or value.strip().lower() in ("", "none") else value


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
    p.add_argument("--suite", default=",".join(_DEFAULTS.suites), help=f"comma-separated: {', '.join(SUITES)} (default both)")
    p.add_argument("--harmful", default=_DEFAULTS.harmful, help=f"harmful prompts for ASR (default {_DEFAULTS.harmful})")
    p.add_argument("--benign", default=_DEFAULTS.benign, help=f"benign prompts for over-refusal (default {_DEFAULTS.benign})")
    p.add_argument("--ppl-text", default=_DEFAULTS.ppl_text, help=f"text file for perplexity (default {_DEFAULTS.ppl_text})")
    p.add_argument("--ppl-stride", type=int, default=None, help="perplexity window stride (default: --max-length, i.e. chunks)")
    p.add_argument("--mcq", default=_DEFAULTS.mcq, help=f"multiple-choice JSONL (default {_DEFAULTS.mcq})")
    p.add_argument("--mcq-method", choices=MCQ_METHODS, default=_DEFAULTS.mcq_method,
                   help="loglik: log-likelihood of each choice text; letter: log-likelihood of its letter")
    p.add_argument("--limit", type=int, default=_DEFAULTS.limit,
                   help=f"prompts per safety set (seeded subset; default {_DEFAULTS.limit}; 0 = all)")
    p.add_argument("--judge", default=_DEFAULTS.judge,
                   help="refusal (default: refusal patterns on the answer's opening, degenerate output apart), "
                   "keyword (union of zou2023 + wei2024 refusal lists), keyword:LIST[+LIST] "
                   f"({', '.join(REFUSAL_LISTS)}), or model:PATH (local HF guard/chat model or classifier)")
    p.add_argument("--max-new-tokens", type=int, default=_DEFAULTS.max_new_tokens, help="generation budget per prompt")
    p.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="prompts per generation batch")
    p.add_argument("--label", default=None, help="model name in metrics.json and reports (default: the --model folder name)")
    add_runtime_args(p)
    add_output_args(p)
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    suites = tuple(s.strip() for s in args.suite.split(",") if s.strip())
    if args.limit is not None and args.limit < 0:
        raise ConfigError(f"--limit must be positive (or 0 for all), got {args.limit}.")
    config = EvalConfig(
        harmful=_data(args.harmful),
        benign=_data(args.benign),
        limit=args.limit or None,
        max_new_tokens=args.max_new_tokens,
        batch_size=args.batch_size,
        judge=args.judge,
        ppl_text=_data(args.ppl_text),
        mcq=_data(args.mcq),
        suites=suites,
        max_length=args.max_length,
        seed=args.seed,
        mcq_method=args.mcq_method,
        ppl_stride=args.ppl_stride,
    )
    config.validate()
    check_judge_spec(config.judge)
    config.check_data()
    prepare_output(args.out, args.overwrite, args.model, args.harmful, args.benign, args.ppl_text, args.mcq)
    label = args.label or Path(str(args.model)).expanduser().name or str(args.model)
    with distributed.session(args.device) as dist:  # one process, or each rank of torchrun / accelerate launch
        args.device = dist.device
        if not dist.is_main:  # generates its share of the answers; rank 0 judges and writes
            evaluate_model(load_from_args(args), config, None, label=label, progress=False, dist=dist)
            return 0
        with atomic_output_dir(args.out, overwrite=args.overwrite) as tmp:
            loaded = load_from_args(args)
            metrics = evaluate_model(loaded, config, tmp, label=label, progress=not args.no_progress, dist=dist)
    print(results_table([{"label": label, "metrics": metrics, "realign_summary": None}]))
    print(f"Saved to {Path(args.out).expanduser().resolve()}")
    return 0
