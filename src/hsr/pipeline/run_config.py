"""The typed run config: built once from the merged YAML/CLI dict, read by attribute everywhere after.

Each section holds its stage's option dataclass (validated, as the stage takes it), the run's own keys
for that stage (data files, switches; see :mod:`hsr.pipeline.sections`) and the section as the YAML
holds it. Stage fingerprints are made of the latter, unchanged in values and key order, so a run
folder made before stays reused.
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..errors import ConfigError
from ..options import build, specs
from ..values import duplicates, shown
from .sections import EVALUABLE, AlignRun, EvalRun, HeadRun, PruneRun, RealignRun, RunOptions, SweepRun
from .stage_options import align_options, eval_options, head_options, importance_options, prune_options, realign_options

if TYPE_CHECKING:
    from ..align import AlignConfig
    from ..evaluation import EvalConfig
    from ..heads import HeadScoreConfig
    from ..pruning import PruneConfig
    from ..realign import ImportanceConfig, RealignConfig


@dataclass(frozen=True)
class Section:
    """``plain``: the section as the YAML holds it (declared key order), what stage fingerprints are made of."""

    plain: dict[str, Any]

    def settings(self, *leave_out: str, **replace: Any) -> dict[str, Any]:
        """The plain section without ``leave_out`` and with ``replace``'d values (keys keep their places)."""
        return {k: replace.get(k, v) for k, v in self.plain.items() if k not in leave_out}


@dataclass(frozen=True)
class AlignSection(Section):
    run: AlignRun
    options: AlignConfig | None  # None when align.enabled is false: its keys are then not checked


@dataclass(frozen=True)
class PruneSection(Section):
    run: PruneRun
    method: str  # as written: also the sweep's default method, with or without prune.pruned
    sparsity: str
    options: PruneConfig | None  # None with prune.pruned (an external pruned model: nothing is pruned)

    def at(self, method: str, sparsity: str) -> PruneConfig:
        """This section's options at one sweep point (another method and sparsity), validated."""
        from ..pruning import Sparsity

        assert self.options is not None, "an external pruned model has no pruning options"
        options = dataclasses.replace(self.options, method=method, sparsity=Sparsity.parse(str(sparsity)))
        try:
            options.validate()
        except ConfigError as exc:
            message = str(exc)
            raise ConfigError(message if message.startswith("prune") else f"prune: {message}") from None
        return options


@dataclass(frozen=True)
class HeadsSection(Section):
    run: HeadRun
    options: HeadScoreConfig


@dataclass(frozen=True)
class ImportanceSection(Section):
    options: ImportanceConfig


@dataclass(frozen=True)
class RealignSection(Section):
    run: RealignRun
    options: RealignConfig  # the top safety heads
    control_options: RealignConfig  # the same with random heads (the control)


@dataclass(frozen=True)
class EvalSection(Section):
    run: EvalRun
    options: EvalConfig | None  # None when evaluate.enabled is false


@dataclass(frozen=True, kw_only=True)
class RunConfig(RunOptions):
    """A whole run: the top-level options, one typed section per stage, and ``plain``, the merged dict
    it was built from (what the run folder's ``config.yaml`` records)."""

    align: AlignSection
    prune: PruneSection
    heads: HeadsSection
    importance: ImportanceSection
    realign: RealignSection
    evaluate: EvalSection
    sweep: SweepRun
    plain: dict[str, Any]

    @property
    def align_enabled(self) -> bool:
        """``align.enabled``: true/false, or "auto" = only for the embedded default model."""
        flag = self.align.run.enabled
        return str(self.model) == "default" if flag == "auto" else bool(flag)


def _run_part(config: dict[str, Any], section: str, cls: type) -> Any:
    """The run's own keys of ``section`` (those ``cls`` declares) as ``cls``."""
    return build(cls, {s.name: config[section][s.name] for s in specs(cls)}, where=f"{section}.")


def check_sections(config: dict[str, Any]) -> None:
    """The checks that span sections or need more than one key's declaration."""
    sw = config["sweep"]
    for key in ("sparsities", "methods"):
        if sw[key] is not None and not sw[key]:
            raise ConfigError(f"sweep.{key} must be a non-empty list or null, got {shown(sw[key])}.")
    if sw["sparsities"]:
        from ..pruning import Sparsity

        points = [Sparsity.parse(str(text)).describe() for text in sw["sparsities"]]
        twice = duplicates(points)
        if twice:
            raise ConfigError(f"sweep.sparsities lists {', '.join(twice)} twice ({shown(sw['sparsities'])}); each point "
                              "would be computed twice under one name, so list it once.")
        if config["prune"]["pruned"]:
            raise ConfigError("sweep.sparsities cannot be combined with prune.pruned (an external pruned model).")
    if sw["methods"] and duplicates(sw["methods"]):
        raise ConfigError(f"sweep.methods lists {', '.join(duplicates(sw['methods']))} twice; list each method once.")
    if not config["evaluate"]["models"]:
        raise ConfigError(f"evaluate.models must name at least one of {', '.join(EVALUABLE)}.")
    from ..placement import check_device, placement_from, resolve_dtype

    check_device(config["device"])
    resolve_dtype(config["dtype"])
    placement_from(str(config["device"]), config.get("max_memory"), config.get("offload_folder"))


def build_run_config(config: dict[str, Any]) -> RunConfig:
    """The typed run config of a merged config dict (see :func:`hsr.pipeline.config.load_run_config`).

    Checks that need no model, with the offending key named: those spanning sections first, then
    every enabled stage's options are built (types, ranges and choices come from their declarations).
    """
    config = copy.deepcopy(config)  # the typed config owns what it was built from
    check_sections(config)
    align = align_options(config) if config["align"]["enabled"] is not False else None
    prune = prune_options(config) if not config["prune"]["pruned"] else None
    heads = head_options(config)
    importance = importance_options(config)
    realign = realign_options(config, random_heads=False)
    evaluate = eval_options(config) if config["evaluate"]["enabled"] else None
    top = build(RunOptions, {s.name: config[s.name] for s in specs(RunOptions)})
    return RunConfig(
        **{f.name: getattr(top, f.name) for f in dataclasses.fields(RunOptions)},
        align=AlignSection(config["align"], _run_part(config, "align", AlignRun), align),
        prune=PruneSection(config["prune"], _run_part(config, "prune", PruneRun), config["prune"]["method"],
                           config["prune"]["sparsity"], prune),
        heads=HeadsSection(config["heads"], _run_part(config, "heads", HeadRun), heads),
        importance=ImportanceSection(config["importance"], importance),
        realign=RealignSection(config["realign"], _run_part(config, "realign", RealignRun), realign,
                               realign_options(config, random_heads=True)),
        evaluate=EvalSection(config["evaluate"], _run_part(config, "evaluate", EvalRun), evaluate),
        sweep=_run_part(config, "sweep", SweepRun),
        plain=config,
    )
