"""``hsr realign``: restore safety-critical pruned weights inside the top safety heads."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import load_samples
from ..errors import ConfigError
from ..heads import read_heads
from ..realign import (
    IMPORTANCE_METHODS,
    RealignConfig,
    compute_importance,
    load_importance,
    load_pruned_masks,
    realign_pruned,
    save_realigned,
)
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "realign",
        help="restore safety-critical pruned weights inside the top safety heads (neuron-level HSR)",
        description="Given the dense model, a pruned checkpoint (hsr's own output or any pruned model of the same "
        "architecture) and a heads.json ranking, restore the pruned weights of the top-h safety heads that are "
        "safety-critical but not utility-critical: (S(q) ∩ U(max_p)) − U(p). Inputs are never modified.",
    )
    add_model_args(p, flag="--dense")
    p.add_argument("--pruned", required=True, help="pruned model directory (mask.safetensors used when present) or hub id")
    p.add_argument("--heads", required=True, help="heads.json from `hsr heads` (rank 1 = most safety-critical)")
    p.add_argument("--utility-data", default="builtin:utility", help="benign prompts + helpful responses (JSONL, vlguard:..., builtin:NAME)")
    p.add_argument("--safety-data", default="builtin:safety", help="harmful prompts + refusals (JSONL, vlguard:..., builtin:NAME)")
    p.add_argument("--utility-scores", help="precomputed utility importance (.safetensors) instead of --utility-data")
    p.add_argument("--safety-scores", help="precomputed safety importance (.safetensors) instead of --safety-data")
    p.add_argument("--importance", choices=IMPORTANCE_METHODS, default="wanda", help="importance score (default wanda)")
    p.add_argument("--limit", type=int, default=32, help="samples per dataset (seeded subset; default 32)")
    p.add_argument("--top-h", type=int, default=10, help="number of safety heads to realign (default 10)")
    p.add_argument("--p", type=float, default=0.5, help="U(p): most useful fraction, never restored (default 0.5)")
    p.add_argument("--q", type=float, default=0.5, help="S(q): most safety-critical fraction (default 0.5)")
    p.add_argument("--max-p", type=float, default=0.7, help="U(max_p): restore only within this useful fraction (default 0.7)")
    p.add_argument("--per-row", action="store_true", help="select top fractions per output row instead of per matrix")
    p.add_argument("--include-mlp", action="store_true", help="also realign the MLPs of layers holding a selected head")
    p.add_argument("--whole-head", action="store_true", help="restore every pruned weight of the heads (HSR-a ablation)")
    p.add_argument("--random-heads", action="store_true", help="control: top-h heads drawn at random (seeded by --seed)")
    p.add_argument("--preserve-nm", action="store_true", help="keep an N:M mask valid by swapping restored weights")
    p.add_argument("--nm", help="N:M pattern for --preserve-nm (default: detected from the mask)")
    p.add_argument("--budget", type=int, help="restore at most this many parameters (highest safety scores first)")
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def _local_dir(source: str) -> Path | None:
    path = Path(source).expanduser()
    return path.resolve() if path.is_dir() else None


def run(args: argparse.Namespace) -> int:
    config = RealignConfig(
        top_h=args.top_h, p=args.p, q=args.q, max_p=args.max_p, per_row=args.per_row, include_mlp=args.include_mlp,
        whole_head=args.whole_head, random_heads=args.random_heads, seed=args.seed, preserve_nm=args.preserve_nm,
        budget=args.budget, nm=args.nm,
    )
    config.validate()
    if args.limit is not None and args.limit < 1:
        raise ConfigError(f"--limit must be a positive integer, got {args.limit}.")
    prepare_output(args.out, args.overwrite, args.pruned, args.dense, args.heads, args.utility_data, args.safety_data,
                   args.utility_scores, args.safety_scores)
    heads_file = read_heads(args.heads)
    needs_scores = not config.whole_head or config.preserve_nm or config.budget is not None

    # Read every input before the first model loads, so a bad file fails in seconds, not after the work.
    given = {kind: load_importance(getattr(args, f"{kind}_scores")) for kind in ("utility", "safety")
             if getattr(args, f"{kind}_scores")}
    samples = {kind: load_samples(getattr(args, f"{kind}_data"), limit=args.limit, seed=args.seed)
               for kind in ("utility", "safety") if needs_scores and kind not in given}
    dense = load_from_args(args, source=args.dense)
    ranking = heads_file.check_model(dense.arch.num_layers, dense.arch.num_heads, args.dense).ranking
    scores = {kind: given.get(kind) for kind in ("utility", "safety")}
    for kind, data in samples.items():
        scores[kind] = compute_importance(dense, data, method=args.importance, max_length=args.max_length)

    pruned = load_from_args(args, source=args.pruned)
    pruned_dir = _local_dir(args.pruned)
    masks = load_pruned_masks(pruned_dir, dense.model, pruned.model)
    result = realign_pruned(dense, pruned, masks, ranking, scores["utility"], scores["safety"], config)
    s = result.summary
    s["inputs"] = {
        "dense": args.dense, "pruned": args.pruned, "heads": args.heads, "importance": args.importance,
        "utility": args.utility_scores or args.utility_data, "safety": args.safety_scores or args.safety_data,
        "limit": args.limit, "max_length": args.max_length,
    }
    del dense
    out = save_realigned(args.out, pruned, result, overwrite=args.overwrite)
    print(
        f"Realigned {s['architecture']} in {len(s['heads'])} {'random' if config.random_heads else 'top safety'} heads: "
        f"restored {s['restored_params']:,} parameters ({s['restored_per_ten_thousand']:.3f} per ten-thousand of "
        f"{s['language_model_params']:,} language-model parameters). Saved to {out}"
    )
    return 0
