"""Options shared by several subcommands, so they are spelled and behave the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..data import DEFAULT_MAX_LENGTH
from ..loading import LoadedModel, load_model


def add_model_args(parser: argparse.ArgumentParser, flag: str = "--model", default: str | None = "default") -> None:
    parser.add_argument(
        flag,
        default=default,
        required=default is None,
        help="hub id, local model directory, .gguf file, or 'default' (embedded SmolLM2-135M-Instruct)",
    )


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dtype", default="float32", help="float32 (default), bfloat16, float16 or auto")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda:0")
    parser.add_argument("--trust-remote-code", action="store_true", help="allow model repos to run their own code")
    parser.add_argument("--seed", type=int, default=0, help="random seed (data subsets, ties)")
    parser.add_argument("--max-length", type=int, default=DEFAULT_MAX_LENGTH, help="cap on tokens per sample")


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def load_from_args(args: argparse.Namespace, source: str | None = None) -> LoadedModel:
    return load_model(
        source if source is not None else args.model,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
    )


def input_path(spec: object) -> str | None:
    """The local path behind a model or data option (None for hub ids, builtins, "default", "none")."""
    if spec is None:
        return None
    text = str(spec)
    if text.startswith("vlguard:"):
        return text.split(":")[1]
    if text.startswith("builtin:") or text.lower() in ("none", "default"):
        return None
    return text


def prepare_output(out: str, overwrite: bool, *inputs: object) -> Path:
    """Check ``--out`` before any work: not overlapping an input, creatable, and not already there
    unless ``--overwrite``; leftovers of killed writers beside it are removed. Returns it resolved."""
    from ..io import OutputExistsError
    from ..rundir import check_out_against_inputs, check_writable, clean_stale_temps

    target = check_out_against_inputs(out, [input_path(i) for i in inputs])
    check_writable(target)
    if target.exists() and not overwrite:
        raise OutputExistsError(f"Output directory {target} already exists; pass --overwrite or choose another --out.")
    if target.parent.is_dir():
        clean_stale_temps(target.parent, depth=1)
    return target
