"""``hsr align``: safety-tune a model (harmful prompts + refusals, benign prompts + its own answers)."""

from __future__ import annotations

import argparse
from dataclasses import fields

from ..align import AlignConfig, align_model, save_aligned
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output

_HELP = {
    "harmful": "harmful prompts (JSONL / builtin:NAME); each gets a hand-written refusal",
    "benign": "benign prompts; each gets the model's own greedy answer",
    "harmful_limit": "use at most this many harmful prompts (seeded subset)",
    "benign_limit": "use at most this many benign prompts (seeded subset)",
    "response_tokens": "cap on the self-distilled benign answers (tokens)",
    "epochs": "passes over the data",
    "batch_size": "examples per optimizer step",
    "lr": "peak AdamW learning rate (linear warm-up, cosine decay)",
    "weight_decay": "AdamW weight decay",
    "warmup_steps": "warm-up steps",
    "train_layers": "train only the last N decoder layers (0 = all)",
    "modules": "comma-separated projections to train (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj)",
}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("align", help="safety-tune a model by supervised fine-tuning (the testbed for HSR)")
    add_model_args(p)
    defaults = AlignConfig()
    for f in fields(AlignConfig):
        if f.name in ("max_length", "seed"):
            continue  # from add_runtime_args
        value = getattr(defaults, f.name)
        kind = {int: int, float: float, str: str}.get(type(value), str)
        if f.name in ("harmful_limit", "benign_limit", "train_layers"):
            kind = int
        shown = ",".join(value) if isinstance(value, tuple) else value
        p.add_argument(f"--{f.name.replace('_', '-')}", type=kind, default=None, help=f"{_HELP[f.name]} (default {shown})")
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def config_from_args(args: argparse.Namespace) -> AlignConfig:
    config = AlignConfig(max_length=args.max_length, seed=args.seed)
    for f in fields(AlignConfig):
        value = getattr(args, f.name, None)
        if value is None or f.name in ("max_length", "seed"):
            continue
        if f.name == "modules":
            value = tuple(m.strip() for m in value.split(",") if m.strip())
        if f.name == "train_layers" and value == 0:
            value = None
        setattr(config, f.name, value)
    config.validate()
    return config


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    prepare_output(args.out, args.overwrite, args.model, args.harmful, args.benign)  # fail before the work
    loaded = load_from_args(args)
    summary = align_model(loaded, config, progress=True)
    summary["base_model"] = str(args.model)
    out = save_aligned(args.out, loaded, summary, overwrite=args.overwrite)
    print(
        f"Aligned {args.model}: {summary['refusal_examples']} refusal + {summary['helpful_examples']} helpful examples, "
        f"{config.epochs} epochs, loss {summary['epoch_losses'][0]:.3f} -> {summary['epoch_losses'][-1]:.3f}. Saved to {out}"
    )
    return 0
