"""``hsr prune``: prune a model's language decoder with Wanda, SparseGPT or magnitude."""

from __future__ import annotations

import argparse

from ..data import load_samples
from ..pruning import METHODS, PruneConfig, Sparsity, prune_model, save_pruned
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output

DEFAULT_PRUNE_DATA = "builtin:utility"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune the language model (Wanda, SparseGPT, magnitude)")
    add_model_args(p)
    p.add_argument("--method", choices=METHODS, default="wanda")
    p.add_argument("--sparsity", default="0.5", help="unstructured ratio in [0,1) or N:M such as 2:4 (default 0.5)")
    p.add_argument("--data", default=DEFAULT_PRUNE_DATA, help="calibration data: JSONL, vlguard:ROOT:SPLIT or builtin:NAME")
    p.add_argument("--n-samples", type=int, default=32, help="calibration samples (seeded subset)")
    p.add_argument("--no-mlp", action="store_true", help="prune attention projections only")
    p.add_argument("--block-size", type=int, default=128, help="SparseGPT column block size")
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = PruneConfig(
        method=args.method,
        sparsity=Sparsity.parse(args.sparsity),
        max_length=args.max_length,
        seed=args.seed,
        include_mlp=not args.no_mlp,
        block_size=args.block_size,
    )
    config.validate()
    prepare_output(args.out, args.overwrite, args.model, args.data)
    samples = load_samples(args.data, limit=args.n_samples, seed=args.seed) if args.method != "magnitude" else []
    loaded = load_from_args(args)
    result = prune_model(loaded, samples, config)
    result.summary["data"] = args.data if samples else None
    out = save_pruned(args.out, loaded, result, overwrite=args.overwrite)
    s = result.summary
    print(
        f"Pruned {s['architecture']} ({s['model']}) with {args.method} at {config.sparsity.describe()}: "
        f"{s['pruned_params']:,} of {s['prunable_params']:,} decoder-linear weights zeroed "
        f"({100 * s['sparsity']:.2f}%), {len(samples)} calibration samples. Saved to {out}"
    )
    return 0
