"""``hsr heads``: score every attention head's role in refusing harmful prompts (Ships / generalized Ships)."""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ..data import load_samples
from ..heads import ENGINES, MODES, SCORES, HeadScoreConfig, save_head_scores, score_heads
from ..io import atomic_output_dir
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output

DEFAULT_HEADS_DATA = "builtin:safety"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("heads", help="find safety-critical attention heads (Ships, generalized Ships, Sahara)")
    add_model_args(p)
    p.add_argument("--data", default=DEFAULT_HEADS_DATA, help="harmful prompts: JSONL, vlguard:ROOT:SPLIT or builtin:NAME")
    p.add_argument("--limit", type=int, default=16, help="number of prompts (seeded subset; default 16)")
    p.add_argument("--score", choices=SCORES, default="ships", help="ships: KL of the next-token distribution; "
                   "gships: principal angles of the last-token hidden-state subspace")
    p.add_argument("--mode", choices=MODES, default="zero", help="zero: scale the head's output by eps; "
                   "uniform: scale its query by eps (uniform attention)")
    p.add_argument("--eps", type=float, default=None, help="ablation factor (default 0 for zero, 1e-5 for uniform)")
    p.add_argument("--engine", choices=ENGINES, default="fast", help="fast: exact, batched and cached (default); "
                   "naive: exact reference loop; approx: gradient pre-selection + exact rescoring of the top candidates")
    p.add_argument("--rank", type=int, default=1, help="subspace rank r for gships and Sahara (default 1)")
    p.add_argument("--sahara-steps", type=int, default=0, help="greedy Sahara group-search steps (default 0: off)")
    p.add_argument("--batch-heads", type=int, default=16, help="ablated heads per batched forward (fast engine)")
    p.add_argument("--approx-top-k", type=int, default=40, help="most candidates the approx engine rescores exactly")
    p.add_argument("--approx-top-h", type=int, default=10, help="approx engine: rescore until the exact top-h set is settled")
    p.add_argument("--approx-tolerance", type=float, default=0.5, help="approx engine: stop rescoring once the "
                   "expected number of top-h heads still missed (error model fitted on rescored heads) is at most this")
    p.add_argument("--no-approx-adaptive", dest="approx_adaptive", action="store_false",
                   help="approx engine: always rescore --approx-top-k candidates")
    p.add_argument("--prefix-reuse", action=argparse.BooleanOptionalAction, default=None,
                   help="fast engine: run the prompts' shared template prefix once per head batch "
                   "(default: on for ships, off for gships/Sahara)")
    p.add_argument("--max-batch-tokens", type=int, default=None, help="fast engine: tokens per forward batching "
                   "prompts with heads (0: one prompt per forward; default: the measured best for the device)")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where per-layer partial results go (default: a hidden folder next to --out); "
                   "rerunning the same command resumes from it")
    add_runtime_args(p)
    add_output_args(p)
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = HeadScoreConfig(
        score=args.score,
        mode=args.mode,
        eps=args.eps,
        engine=args.engine,
        rank=args.rank,
        sahara_steps=args.sahara_steps,
        batch_heads=args.batch_heads,
        max_length=args.max_length,
        approx_top_k=args.approx_top_k,
        approx_top_h=args.approx_top_h,
        approx_tolerance=args.approx_tolerance,
        approx_adaptive=args.approx_adaptive,
        prefix_reuse=args.prefix_reuse,
        max_batch_tokens=args.max_batch_tokens,
        seed=args.seed,
    )
    config.validate()
    if args.limit is not None and args.limit < 1:
        from ..errors import ConfigError

        raise ConfigError(f"--limit must be at least 1, got {args.limit}.")
    out = prepare_output(args.out, args.overwrite, args.model, args.data, args.checkpoint_dir)
    samples = load_samples(args.data, limit=args.limit, seed=args.seed)
    loaded = load_from_args(args)
    checkpoint = Path(args.checkpoint_dir) if args.checkpoint_dir else out.with_name(f".{out.name}.heads-checkpoint")
    result = score_heads(loaded, samples, config, checkpoint_dir=checkpoint, progress=not args.no_progress)
    with atomic_output_dir(out, overwrite=args.overwrite) as tmp:
        save_head_scores(tmp, result, model_label=str(args.model))
    if args.checkpoint_dir is None:
        shutil.rmtree(checkpoint, ignore_errors=True)
    top = ", ".join(f"L{l}.H{h}" for l, h in result.top(5))
    arch = loaded.arch
    print(
        f"Scored {arch.num_layers * arch.num_heads} heads ({arch.num_layers} layers x {arch.num_heads}) of "
        f"{args.model} with {config.score} ({config.mode} ablation, {config.engine} engine) on {len(samples)} "
        f"prompts. Top heads: {top}. Saved to {out}"
    )
    return 0
