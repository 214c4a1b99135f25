"""The run config's sections become the stages' own option dataclasses here, and only here.

Each function takes the merged (plain) run config and builds one stage's options from the keys of its
section that belong to it, plus the shared top-level keys; errors name the section. The typed run
config (:mod:`hsr.pipeline.run_config`) is built from these, so a bad value fails before any model loads.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import ConfigError
from ..options import build, specs
from .sections import SHARED


def stage_options(config: dict[str, Any], section: str, cls: type, **fixed: Any) -> Any:
    """``cls`` from the section's keys that belong to it, with the shared top-level keys."""
    names = {s.name for s in specs(cls, SHARED)}
    values = {k: v for k, v in config[section].items() if k in names and k not in fixed}
    shared = {k: config[k] for k in SHARED if k in {f.name for f in dataclasses.fields(cls)}}
    try:
        return build(cls, values, {**shared, **fixed}, where=f"{section}.")
    except ConfigError as exc:
        message = str(exc)
        raise ConfigError(message if message.startswith(section) else f"{section}: {message}") from None


def align_options(config: dict[str, Any]):
    from ..align import AlignConfig

    return stage_options(config, "align", AlignConfig)


def prune_options(config: dict[str, Any], method: str | None = None, sparsity: str | None = None):
    from ..pruning import PruneConfig, Sparsity

    fixed: dict[str, Any] = {}
    if method:
        fixed["method"] = method
    if sparsity:
        fixed["sparsity"] = Sparsity.parse(str(sparsity))
    return stage_options(config, "prune", PruneConfig, **fixed)


def head_options(config: dict[str, Any]):
    from ..heads import HeadScoreConfig

    top_h = config["heads"]["approx_top_h"]
    return stage_options(config, "heads", HeadScoreConfig,
                         approx_top_h=top_h if top_h is not None else config["realign"]["top_h"])


def importance_options(config: dict[str, Any]):
    from ..realign import ImportanceConfig

    return stage_options(config, "importance", ImportanceConfig)


def realign_options(config: dict[str, Any], random_heads: bool):
    from ..realign import RealignConfig

    return stage_options(config, "realign", RealignConfig, random_heads=random_heads)


def eval_options(config: dict[str, Any]):
    from ..evaluation import EvalConfig
    from ..evaluation.judges import check_judge_spec

    options = stage_options(config, "evaluate", EvalConfig)
    check_judge_spec(options.judge)
    return options
