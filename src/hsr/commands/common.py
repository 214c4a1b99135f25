"""Options shared by several subcommands, so they are spelled and behave the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Mapping

from ..inputs import Inputs

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


def prepare_output(args: argparse.Namespace, inputs: Inputs, written: Mapping[str, object] | None = None) -> Path:
    """Check every folder the command writes before any work, against everything it reads (``inputs``).

    The folders: ``--out``, ``--offload-folder`` and ``written`` (e.g. ``--checkpoint-dir``), and the model
    cache while the default model is converted. None may equal, contain or lie inside an input; each must
    be creatable, and ``--out`` must not overlap the others (replacing it would delete them) nor exist
    unless ``--overwrite``. Leftovers of killed writers beside ``--out`` are removed. Returns it resolved.
    """
    from ..io import OutputExistsError
    from ..rundir import OutputError, check_writable, clean_stale_temps

    folders = {"--out": args.out, "--offload-folder": getattr(args, "offload_folder", None), **(written or {})}
    resolved = {flag: check_writable(inputs.check_written(folder, flag), flag)
                for flag, folder in folders.items() if folder is not None}
    target = resolved.pop("--out")
    for flag, folder in resolved.items():
        if folder == target or target in folder.parents or folder in target.parents:
            raise OutputError(f"--out {target} overlaps {flag} {folder}; give them separate folders.")
    inputs.check_cache()
    if target.exists() and not args.overwrite:
        raise OutputExistsError(f"Output directory {target} already exists; pass --overwrite or choose another --out.")
    if target.parent.is_dir():
        clean_stale_temps(target.parent, depth=1)
    return target
