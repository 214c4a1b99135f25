"""``hsr realign``: restore safety-critical pruned weights inside the top safety heads."""

from __future__ import annotations

import argparse
import functools
import tempfile
from pathlib import Path
from typing import Any

from ..data import load_samples, require_responses
from ..inputs import Inputs
from ..loading import LoadedModel, locate_model
from ..realign.external import ModelMismatchError
from ..shape import model_class, model_heads
from ..heads import read_heads
from ..options import add_flags, from_args
from ..pipeline.sections import SHARED
from ..pipeline.stage_bodies import importance_stage, realign_stage
from ..realign import ImportanceConfig, RealignConfig, load_importance
from ..realign.ranking import select_heads
from ..realign.restore import TAYLOR
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
    p.add_argument("--utility-scores", help="precomputed utility importance (.safetensors) instead of --utility-data")
    p.add_argument("--safety-scores", help="precomputed safety importance (.safetensors) instead of --safety-data")
    add_flags(p, ImportanceConfig, skip=SHARED)
    add_flags(p, RealignConfig, skip=("seed",))
    add_runtime_args(p)
    add_output_args(p)
    p.set_defaults(func=run)


def _local_dir(source: str) -> Path | None:
    path = Path(source).expanduser()
    return path.resolve() if path.is_dir() else None


def check_models_early(dense: str, pruned: str) -> None:
    """Missing models and a dense/pruned architecture mismatch, told from their files before either loads
    (the loaded models are compared again, tensor by tensor)."""
    for source in (dense, pruned):
        locate_model(source, convert_default=False)
    names = model_class(dense), model_class(pruned)
    if None not in names and names[0] != names[1]:
        raise ModelMismatchError(
            f"Dense model is {names[0]} but the pruned model is {names[1]}; they must share an architecture."
        )


def run(args: argparse.Namespace) -> int:
    config = from_args(args, RealignConfig, fixed={"seed": args.seed}, skip=("seed",))
    imp = from_args(args, ImportanceConfig, fixed={"max_length": args.max_length, "seed": args.seed}, skip=SHARED)
    needs_scores = not config.whole_head or config.preserve_nm or config.budget is not None
    taylor = config.selection == TAYLOR  # its gradient runs on the safety data, even with --safety-scores
    inputs = Inputs()
    inputs.model(args.dense, "--dense")
    inputs.model(args.pruned, "--pruned")
    inputs.add(args.heads, "--heads")
    for kind in ("utility", "safety"):
        inputs.add(getattr(args, f"{kind}_scores"), f"--{kind}-scores")
        if needs_scores and not getattr(args, f"{kind}_scores") or taylor and kind == "safety":
            inputs.data(getattr(imp, f"{kind}_data"), f"--{kind}-data")
    prepare_output(args, inputs)
    heads_file = read_heads(args.heads)

    # Read every input before the first model loads, so a bad file fails in seconds, not after the work.
    lazy = bool(args.max_memory or args.offload_folder)  # placed: read score tensors only when used
    given = {kind: load_importance(getattr(args, f"{kind}_scores"), lazy=lazy) for kind in ("utility", "safety")
             if getattr(args, f"{kind}_scores")}
    samples = {kind: load_samples(getattr(imp, f"{kind}_data"), limit=imp.limit, seed=args.seed)
               for kind in ("utility", "safety") if needs_scores and kind not in given}
    if taylor and "safety" not in samples:
        samples_refusals = load_samples(imp.safety_data, limit=imp.limit, seed=args.seed)
        require_responses(samples_refusals, "--safety-data")
    else:
        samples_refusals = samples.get("safety")
    for kind, rows in samples.items():
        require_responses(rows, f"--{kind}-data")
    check_models_early(args.dense, args.pruned)
    shape = model_heads(args.dense)  # from config.json, so a shape mismatch or too large --top-h fails now
    if shape is not None:
        heads_file.check_model(*shape, args.dense)
    select_heads(heads_file.ranking, config.top_h, heads_file.num_layers, heads_file.num_heads, config.random_heads, config.seed)
    scratch: list[tempfile.TemporaryDirectory] = []  # streamed scores, read while realigning: kept until the end

    def ranking_of(dense: LoadedModel) -> list[tuple[int, int]]:
        return heads_file.check_model(dense.arch.num_layers, dense.arch.num_heads, args.dense).ranking

    def scores_of(dense: LoadedModel) -> tuple[Any, Any]:
        if lazy and args.offload_folder:
            Path(args.offload_folder).expanduser().mkdir(parents=True, exist_ok=True)
        if lazy:
            scratch.append(tempfile.TemporaryDirectory(
                prefix="hsr-importance-", dir=args.offload_folder and str(Path(args.offload_folder).expanduser())))
        folder = Path(scratch[0].name) if scratch else None
        computed = importance_stage(dense, samples, imp, args.progress, folder=folder, stream=bool(scratch))
        scores = {**given, **computed}
        return scores.get("utility"), scores.get("safety")

    inputs = {
        "dense": args.dense, "pruned": args.pruned, "heads": args.heads, "importance": imp.method,
        "utility": args.utility_scores or imp.utility_data, "safety": args.safety_scores or imp.safety_data,
        "limit": imp.limit, "max_length": imp.max_length, **({"refusals": imp.safety_data} if taylor else {}),
    }
    result, out = realign_stage(functools.partial(load_from_args, args), args.dense, args.pruned, _local_dir(args.pruned),
                                ranking_of, scores_of, config, args.out, overwrite=args.overwrite, inputs=inputs,
                                refusals=samples_refusals if taylor else None, max_length=imp.max_length)
    s = result.summary
    how = " by Taylor score" if taylor else ""
    print(
        f"Realigned {s['architecture']} in {len(s['heads'])} {'random' if config.random_heads else 'top safety'} heads: "
        f"restored{how} {s['restored_params']:,} parameters ({s['restored_per_ten_thousand']:.3f} per ten-thousand of "
        f"{s['language_model_params']:,} language-model parameters). Saved to {out}"
    )
    return 0
