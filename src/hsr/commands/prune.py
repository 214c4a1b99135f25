"""``hsr prune``: prune a model's language decoder with Wanda, SparseGPT or magnitude."""

from __future__ import annotations

import argparse

import functools

from ..inputs import Inputs
from ..options import add_flags, from_args
from ..pipeline.sections import SHARED, PruneData
from ..pipeline.stage_bodies import prune_stage
from ..pruning import PruneConfig
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
    pruned = prune_stage(functools.partial(load_from_args, args), args.model, config, data, args.out, args.progress,
                         overwrite=args.overwrite)
    s = pruned.result.summary
    print(
        f"Pruned {s['architecture']} ({s['model']}) with {config.method} at {config.sparsity.describe()}: "
        f"{s['pruned_params']:,} of {s['prunable_params']:,} decoder-linear weights zeroed "
        f"({100 * s['sparsity']:.2f}%), {pruned.samples} calibration samples. Saved to {pruned.path}"
    )
    return 0
