"""``hsr align``: safety-tune a model (harmful prompts + refusals, benign prompts + its own answers)."""

from __future__ import annotations

import argparse
import functools

from ..align import AlignConfig
from ..inputs import Inputs
from ..options import add_flags, from_args
from ..pipeline.sections import SHARED
from ..pipeline.stage_bodies import align_stage
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output

def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="safety-tune a model by supervised fine-tuning (the testbed for HSR)")
    add_model_args(p)
    add_flags(p, AlignConfig, skip=SHARED)
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> AlignConfig:
    return from_args(args, AlignConfig, fixed={"max_length": args.max_length, "seed": args.seed}, skip=SHARED)


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    inputs = Inputs()
    inputs.model(args.model)
    inputs.data(config.harmful, "--harmful")
    inputs.data(config.benign, "--benign")
    prepare_output(args, inputs)  # fail before the work
    summary, out = align_stage(functools.partial(load_from_args, args), args.model, config, args.out, args.progress,
                               overwrite=args.overwrite)
    print(
        f"Aligned {args.model}: {summary['refusal_examples']} refusal + {summary['helpful_examples']} helpful examples, "
        f"{config.epochs} epochs, loss {summary['epoch_losses'][0]:.3f} -> {summary['epoch_losses'][-1]:.3f}. Saved to {out}"
    )
    return 0
