"""``hsr prune``: prune a model's language decoder with Wanda, SparseGPT or magnitude."""

from __future__ import annotations

import argparse

from ..data import load_samples
from ..inputs import Inputs
from ..options import add_flags, from_args
from ..pipeline.sections import SHARED, PruneData
from ..pruning import PruneConfig, prune_model, save_pruned
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prune", help="prune the language model (Wanda, SparseGPT, magnitude)")
    add_model_args(p)
    add_flags(p, PruneConfig, skip=SHARED)
    add_flags(p, PruneData)
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = from_args(args, PruneConfig, fixed={"max_length": args.max_length, "seed": args.seed}, skip=SHARED)
    data = from_args(args, PruneData)
    inputs = Inputs()
    inputs.model(args.model)
    if config.method != "magnitude":
        inputs.data(data.data, "--data")
    prepare_output(args, inputs)
    samples = load_samples(data.data, limit=data.n_samples, seed=args.seed) if config.method != "magnitude" else []
    loaded = load_from_args(args)
    result = prune_model(loaded, samples, config, progress=args.progress)
    result.summary["data"] = data.data if samples else None
    out = save_pruned(args.out, loaded, result, overwrite=args.overwrite)
    s = result.summary
    print(
        f"Pruned {s['architecture']} ({s['model']}) with {config.method} at {config.sparsity.describe()}: "
        f"{s['pruned_params']:,} of {s['prunable_params']:,} decoder-linear weights zeroed "
        f"({100 * s['sparsity']:.2f}%), {len(samples)} calibration samples. Saved to {out}"
    )
    return 0
