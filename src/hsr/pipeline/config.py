"""Run configuration for ``hsr run``: the embedded defaults, a user's YAML on top, then ``--set`` overrides.

Every key a user may set exists in the embedded ``configs/default.yaml``; anything else is a typo and
fails with the key's dotted name, before any model is loaded.
"""

from __future__ import annotations

import copy
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

#: Sections whose keys are free-form (none today; kept explicit so validation stays strict).
_OPEN_SECTIONS: frozenset[str] = frozenset()


def default_config_text() -> str:
    """The embedded default run configuration, as YAML text (also what ``hsr run --print-config`` shows)."""
    return resources.files("hsr").joinpath("configs/default.yaml").read_text()


def default_config() -> dict[str, Any]:
    return yaml.safe_load(default_config_text())


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{where}{key}"
        if key not in base and where.rstrip(".") not in _OPEN_SECTIONS:
            known = ", ".join(sorted(map(str, base)))
            raise ConfigError(f"Unknown config key {dotted!r}; known keys here: {known}.")
        if isinstance(base.get(key), dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {dotted!r} must be a mapping, got {value!r}.")
            out[key] = _merge(base[key], value, f"{dotted}.")
        else:
            out[key] = value
    return out


def parse_override(text: str) -> dict[str, Any]:
    """``"realign.top_h=5"`` -> ``{"realign": {"top_h": 5}}`` (the value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. realign.top_h=5), got {text!r}.")
    key, raw = text.split("=", 1)
    parts = [p for p in key.strip().split(".") if p]
    if not parts:
        raise ConfigError(f"--set expects KEY=VALUE, got {text!r}.")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
    # Sparsity "2:4" parses as a YAML sexagesimal int in some loaders; keep text values as text.
    if parts[-1] == "sparsity":
        value = raw.strip()
    nested: dict[str, Any] = {parts[-1]: value}
    for part in reversed(parts[:-1]):
        nested = {part: nested}
    return nested


def load_run_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Defaults, then the YAML file at ``path`` (if any), then each ``KEY=VALUE`` override."""
    config = default_config()
    if path is not None:
        p = Path(path).expanduser()
        if not p.is_file():
            raise ConfigError(f"Run config {str(p)!r} does not exist.")
        try:
            user = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        if not isinstance(user, dict):
            raise ConfigError(f"{p}: the top level must be a mapping of sections (prune:, heads:, ...).")
        config = _merge(config, user)
    for text in overrides:
        config = _merge(config, parse_override(text))
    validate_run_config(config)
    return config


def validate_run_config(config: dict[str, Any]) -> None:
    """Checks that need no model: ranges and choices, with the offending key named."""
    r = config["realign"]
    for key in ("p", "q", "max_p"):
        if not isinstance(r[key], (int, float)):
            raise ConfigError(f"realign.{key} must be a number, got {r[key]!r}.")
    if not 0 <= r["p"] <= r["max_p"] <= 1:
        raise ConfigError(f"Need 0 <= realign.p <= realign.max_p <= 1, got p={r['p']}, max_p={r['max_p']}.")
    if not 0 < r["q"] <= 1:
        raise ConfigError(f"Need 0 < realign.q <= 1, got q={r['q']}.")
    if not isinstance(r["top_h"], int) or r["top_h"] < 1:
        raise ConfigError(f"realign.top_h must be a positive integer, got {r['top_h']!r}.")
    if config["heads"]["score"] not in ("ships", "gships"):
        raise ConfigError(f"heads.score must be ships or gships, got {config['heads']['score']!r}.")
    if config["heads"]["score_model"] not in ("dense", "pruned"):
        raise ConfigError(f"heads.score_model must be dense or pruned, got {config['heads']['score_model']!r}.")
    if config["importance"]["method"] not in ("wanda", "snip"):
        raise ConfigError(f"importance.method must be wanda or snip, got {config['importance']['method']!r}.")
    for section, key in (("heads", "limit"), ("importance", "limit"), ("evaluate", "limit"), ("prune", "n_samples")):
        value = config[section][key]
        if value is not None and (not isinstance(value, int) or value < 1):
            raise ConfigError(f"{section}.{key} must be a positive integer or null, got {value!r}.")
    if config["align"]["enabled"] not in ("auto", True, False):
        raise ConfigError(f"align.enabled must be auto, true or false, got {config['align']['enabled']!r}.")
    if config["align"]["enabled"] is not False:
        from ..align import AlignConfig

        cfg = {k: v for k, v in config["align"].items() if k != "enabled"}
        try:
            AlignConfig(**cfg).validate()
        except TypeError as exc:
            raise ConfigError(f"align: {exc}") from exc
    sw = config["sweep"]
    for key in ("sparsities", "methods"):
        value = sw[key]
        if value is not None and (not isinstance(value, list) or not value):
            raise ConfigError(f"sweep.{key} must be a non-empty list or null, got {value!r}.")
    if sw["sparsities"]:
        from ..pruning import METHODS, Sparsity

        for text in sw["sparsities"]:
            Sparsity.parse(str(text))
        bad = [m for m in sw["methods"] or [] if m not in METHODS]
        if bad:
            raise ConfigError(f"sweep.methods: unknown {bad}; choose from {', '.join(METHODS)}.")
        if config["prune"]["pruned"]:
            raise ConfigError("sweep.sparsities cannot be combined with prune.pruned (an external pruned model).")
    if not isinstance(config["max_length"], int) or config["max_length"] < 1:
        raise ConfigError(f"max_length must be a positive integer, got {config['max_length']!r}.")
