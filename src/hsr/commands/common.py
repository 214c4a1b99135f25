"""Options shared by several subcommands, so they are spelled and behave the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..loading import LoadedModel, load_model
from ..options import add_flags, from_args
from ..pipeline.sections import RunOptions


def add_model_args(parser: argparse.ArgumentParser, flag: str = "--model", default: str | None = "default") -> None:
    parser.add_argument(
        flag,
        default=default,
        required=default is None,
        help="hub id, local model directory, .gguf file, or 'default' (embedded SmolLM2-135M-Instruct)",
    )


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--seed, --device, --dtype, --max-memory, --offload-folder, --max-length, --trust-remote-code,
    --no-progress: declared once, in ``RunOptions``, so every command spells and checks them alike."""
    add_flags(parser, RunOptions, skip=("model", "out"))
    parser.set_defaults(_runtime_defaults=True)


def runtime(args: argparse.Namespace) -> RunOptions:
    """The runtime flags with their declared defaults filled in (``args`` is updated in place too)."""
    options = from_args(args, RunOptions, fixed={"model": "", "out": ""}, skip=("model", "out"))
    for name in ("seed", "device", "dtype", "max_length", "trust_remote_code", "max_memory", "offload_folder",
                 "progress"):
        setattr(args, name, getattr(options, name))
    from ..placement import placement_from

    placement_from(options.device, options.max_memory, options.offload_folder)  # bad specs fail before any work
    if not options.progress:
        hide_library_progress()
    return options


def hide_library_progress() -> None:
    """--no-progress also silences the bars transformers draws itself (loading and writing shards)."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def add_output_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="output directory (written atomically)")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")


def load_from_args(args: argparse.Namespace, source: str | None = None, share: int = 1) -> LoadedModel:
    """The model ``source`` (default ``--model``) as the runtime flags say; ``share``: models held at once,
    which split the ``--max-memory`` budgets."""
    return load_model(
        source if source is not None else args.model,
        dtype=args.dtype,
        device=args.device,
        trust_remote_code=args.trust_remote_code,
        max_memory=getattr(args, "max_memory", None),
        offload_folder=getattr(args, "offload_folder", None),
        share=share,
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
