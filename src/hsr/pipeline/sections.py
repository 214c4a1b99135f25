"""The run config's layout: which option dataclasses make up each YAML section of ``hsr run``.

A section is a stage's own options (its dataclass in the stage's module, minus the fields every
stage shares: ``max_length`` and ``seed`` live at the top level) plus the run's inputs for that
stage (data files, subset sizes), declared here once and reused by the matching ``hsr`` command.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..data import DEFAULT_MAX_LENGTH
from ..options import option, section_defaults, seed_option
from ..pruning.methods import METHODS

#: Fields every stage shares; the run config keeps them at the top level.
SHARED = ("max_length", "seed")
EVALUABLE = ("base", "dense", "pruned", "realigned", "control")  # base = the input model before align


@dataclass(frozen=True)
class RunOptions:
    """The top level of a run config; all but ``model`` and ``out`` are also every command's runtime flags."""

    model: str = option("default", help="hub id, local directory, .gguf file, or default (embedded SmolLM2-135M-Instruct)")
    out: str = option("hsr-out/default", help="run directory; finished stages are reused when re-run")
    seed: int = seed_option(help="random seed (data subsets, ties)")
    device: str = option("cpu", help="torch device, e.g. cpu or cuda:0")
    dtype: str = option("float32", help="float32, bfloat16, float16 or auto")
    max_memory: str | None = option(None, help="let accelerate place the model within these budgets, e.g. "
                                    "0=20GiB,cpu=64GiB (layer-wise stages then hold one decoder layer on the device "
                                    "at a time); none = the whole model on --device")
    offload_folder: str | None = option(None, help="folder for the weights that fit in no --max-memory budget (disk "
                                        "offload; a fresh subfolder per loaded model, removed after)")
    max_length: int = option(DEFAULT_MAX_LENGTH, help="cap on tokens per sample", minimum=1)
    trust_remote_code: bool = option(False, help="allow model repos to run their own code")
    progress: bool = option(True, help="show progress bars (--no-progress hides them)")


@dataclass
class AlignRun:
    enabled: str | bool = option("auto", help="auto = only for model default (SmolLM2 is not safety-tuned) | true | "
                                 "false", choices=("auto", True, False))


@dataclass
class PruneData:
    """What ``hsr prune`` and the prune stage calibrate on."""

    data: str = option("builtin:utility", help="calibration data: JSONL, vlguard:ROOT:SPLIT or builtin:NAME")
    n_samples: int | None = option(32, help="calibration samples (seeded subset); none = all", minimum=1)


@dataclass
class PruneRun(PruneData):
    pruned: str | None = option(None, help="an existing pruned checkpoint to start from instead (skips pruning)")


@dataclass
class HeadData:
    """The harmful prompts ``hsr heads`` and the heads stage score on (and the benign ones, for scores
    that need them)."""

    data: str = option("builtin:safety", help="harmful prompts (their responses are ignored): JSONL, "
                       "vlguard:ROOT:SPLIT or builtin:NAME")
    limit: int | None = option(16, help="number of prompts (seeded subset); none = all", minimum=1)
    benign_data: str = option("builtin:utility", help="benign prompts for scores that need them "
                              "(contrastive_ships, refusal_direction, pair; others ignore it), same formats and "
                              "limit as data")


def head_data_keys(score: str) -> tuple[str, ...]:
    """The keys of the heads data that score ``score`` reads (``benign_data`` only where it needs benign
    prompts, so other scores' stage fingerprints do not depend on it)."""
    from ..heads.scores import get_score

    return ("data", "benign_data") if "benign" in get_score(score).needs.prompts else ("data",)


@dataclass
class HeadRun(HeadData):
    score_model: str = option("dense", help="score heads on the dense (aligned) model or on the pruned one (a score "
                              "of a dense/pruned pair, pair, always scores the pruned model against the dense one)",
                              choices=("dense", "pruned"))


@dataclass
class RealignRun:
    control: bool = option(True, help="also build the random-head control (same h, seeded)")


@dataclass
class SweepRun:
    sparsities: list[str] | None = option(None, help="hsr sweep: sparsities, e.g. [0.3, 0.4, 0.5]; none = a single "
                                          "run at prune.sparsity")
    methods: list[str] | None = option(None, help="hsr sweep: pruning methods; none = [prune.method]",
                                       choices=METHODS)


@dataclass
class EvalRun:
    enabled: bool = option(True, help="evaluate the models and write the report")
    models: list[str] = option(help="models to evaluate (base = before align, skipped without it)",
                               factory=lambda: list(EVALUABLE), choices=EVALUABLE)


def layout() -> dict[str, list[tuple[type, tuple[str, ...]]]]:
    """Section name -> the option classes it is made of (with fields left out). ``""`` = top level."""
    from ..align import AlignConfig
    from ..evaluation import EvalConfig
    from ..heads import HeadScoreConfig
    from ..pruning import PruneConfig
    from ..realign import ImportanceConfig, RealignConfig

    return {
        "": [(RunOptions, ())],
        "align": [(AlignRun, ()), (AlignConfig, SHARED)],
        "prune": [(PruneRun, ()), (PruneConfig, SHARED)],
        "heads": [(HeadRun, ()), (HeadScoreConfig, SHARED)],
        "importance": [(ImportanceConfig, SHARED)],
        "realign": [(RealignConfig, (*SHARED, "random_heads")), (RealignRun, ())],
        "sweep": [(SweepRun, ())],
        "evaluate": [(EvalRun, ()), (EvalConfig, SHARED)],
    }


def derived_defaults() -> dict[str, Any]:
    """Every key of the run config with its declared default."""
    config: dict[str, Any] = {}
    for section, parts in layout().items():
        values: dict[str, Any] = {}
        for cls, skip in parts:
            values.update(section_defaults(cls, skip))
        if section:
            config[section] = values
        else:
            config.update(values)
    return config
