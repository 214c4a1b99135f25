"""``hsr heads``: score every attention head's role in refusing harmful prompts (Ships / generalized Ships), or,
with ``--score pair --dense MODEL``, where pruning ``--model`` broke it (restoring each head's dense weights)."""

from __future__ import annotations

import argparse
import functools
import shutil
from pathlib import Path

from .. import distributed
from ..data import load_samples
from ..errors import ConfigError
from ..heads import HeadScoreConfig, get_score
from ..inputs import Inputs
from ..io import atomic_output_dir
from ..shape import model_heads
from ..options import add_flags, from_args
from ..pipeline.sections import SHARED, HeadData, head_data_keys
from ..pipeline.stage_bodies import heads_stage, write_heads
from ..realign.external import ModelMismatchError
from .common import add_model_args, add_output_args, add_runtime_args, load_from_args, prepare_output
from .realign import check_models_early


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("heads", help="find safety-critical attention heads (Ships, generalized Ships, Sahara)")
    add_model_args(p)
    p.add_argument("--dense", default=None, metavar="MODEL",
                   help="the dense model of a dense/pruned pair, for scores that need one (pair): --model is then the "
                   "pruned model, scored, and --dense the model whose weights are restored into it (same "
                   "architecture and shapes)")
    add_flags(p, HeadScoreConfig, skip=SHARED)
    add_flags(p, HeadData)
    p.add_argument("--checkpoint-dir", default=None,
                   help="where per-layer partial results go (default: a hidden folder next to --out); "
                   "rerunning the same command resumes from it")
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config = from_args(args, HeadScoreConfig, fixed={"max_length": args.max_length, "seed": args.seed}, skip=SHARED)
    data = from_args(args, HeadData)
    pair = check_dense_flag(config.score, args.dense)
    inputs = Inputs()
    inputs.model(args.model)
    if pair:
        inputs.model(args.dense, "--dense")
    for key in head_data_keys(config.score):  # benign_data only for scores that need benign prompts
        inputs.data(getattr(data, key), f"--{key.replace('_', '-')}")
    given = Path(args.out).expanduser().resolve()
    checkpoint = Path(args.checkpoint_dir) if args.checkpoint_dir else given.with_name(f".{given.name}.heads-checkpoint")
    out = prepare_output(args, inputs, {"--checkpoint-dir": checkpoint})
    samples = load_samples(data.data, limit=data.limit, seed=args.seed)
    benign = (load_samples(data.benign_data, limit=data.limit, seed=args.seed)
              if "benign_data" in head_data_keys(config.score) else None)
    shape = model_heads(args.model)  # from config.json: too many heads asked for fails before the model loads
    if pair:
        check_pair_files(args.dense, args.model, shape)
    if shape is not None:
        config.check_against(len(samples), *shape, n_benign=None if benign is None else len(benign))
    with distributed.session(args.device) as dist:  # one process, or each rank of torchrun / accelerate launch
        args.device = dist.device
        scored = heads_stage(functools.partial(load_from_args, args), args.model, samples, config, checkpoint,
                             args.progress, dist=dist, benign=benign, dense=args.dense if pair else None)
        if not dist.is_main:  # every rank holds the result; only rank 0 writes it
            return 0
    with atomic_output_dir(out, overwrite=args.overwrite) as tmp:
        write_heads(tmp, scored, model_label=str(args.model))
    if args.checkpoint_dir is None:
        shutil.rmtree(checkpoint, ignore_errors=True)
    top = ", ".join(f"L{l}.H{h}" for l, h in scored.scores.top(5))
    arch = scored.arch
    processes = f" in {dist.world_size} processes" if dist.active else ""
    how = f"dense {args.dense} restored head by head" if pair else f"{config.mode} ablation"
    print(
        f"Scored {arch.num_layers * arch.num_heads} heads ({arch.num_layers} layers x {arch.num_heads}) of "
        f"{args.model} with {config.score} ({how}, {config.engine} engine) on {len(samples)} "
        f"prompts{processes}. Top heads: {top}. Saved to {out}"
    )
    return 0


def check_dense_flag(score: str, dense: str | None) -> bool:
    """Whether ``score`` scores a dense/pruned pair; refuses a missing ``--dense`` for one, and a ``--dense``
    that a single-model score would ignore."""
    pair = get_score(score).needs.models == 2
    if pair and not dense:
        raise ConfigError(f"--score {score} scores a dense/pruned pair: give the dense model with --dense MODEL "
                          "(--model is the pruned model).")
    if dense and not pair:
        raise ConfigError(f"--dense is only for scores of a dense/pruned pair (pair); --score {score} scores "
                          "--model alone.")
    return pair


def check_pair_files(dense: str, pruned: str, pruned_shape: tuple[int, int] | None) -> None:
    """A dense/pruned mismatch told from the models' files before either loads (the loaded models are
    compared again, tensor by tensor)."""
    check_models_early(dense, pruned)
    dense_shape = model_heads(dense)
    if None not in (dense_shape, pruned_shape) and dense_shape != pruned_shape:
        raise ModelMismatchError(f"--dense has {dense_shape[0]} layers x {dense_shape[1]} heads but --model has "
                                 f"{pruned_shape[0]} x {pruned_shape[1]}; the pair must share its shapes.")
