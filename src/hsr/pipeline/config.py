"""Run configuration for ``hsr run``: the embedded defaults, a user's YAML on top, then ``--set`` overrides.

Every key a user may set exists in the embedded ``configs/default.yaml``; anything else is a typo and
fails with the key's dotted name, before any model is loaded.
"""

from __future__ import annotations

import copy
import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError

#: Keys whose default is a number but that may also be null.
_NULLABLE = frozenset({"align.train_layers"})
#: Keys whose default is a list but that a user may write as one comma-separated string.
_LISTS_FROM_TEXT = frozenset({"evaluate.suites", "evaluate.models", "align.modules", "sweep.sparsities", "sweep.methods"})
#: Data keys that "none" switches off (as ``hsr evaluate --benign none`` does).
_OPTIONAL_DATA = frozenset({"evaluate.harmful", "evaluate.benign", "evaluate.ppl_text", "evaluate.mcq"})
#: Keys read as text even when YAML sees a number (0.5) or a base-60 integer (2:4).
_TEXT_KEYS = frozenset({"prune.sparsity"})


class _YamlLoader(yaml.SafeLoader):
    """YAML 1.1 safe loader without base-60 numbers: ``sparsity: 2:4`` stays the text "2:4", not 124."""


_YamlLoader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if not (tag.endswith((":int", ":float")) and rx.match("2:4"))]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_YamlLoader.add_implicit_resolver(  # decimal integers only (base 60 removed above)
    "tag:yaml.org,2002:int",
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_YamlLoader.add_implicit_resolver(  # 1e-4 is a number, as a user means it (YAML 1.1 wants 1.0e-4)
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def load_yaml(text: str) -> Any:
    """Parse config YAML (no base-60 numbers)."""
    return yaml.load(text, Loader=_YamlLoader)  # noqa: S506 (a SafeLoader subclass)


def _typed(dotted: str, default: Any, value: Any) -> Any:
    """``value`` checked against the type of the key's default, so wrong types fail here with the key named
    instead of deep inside a stage (a quoted "no" is not false, a string is not a list of its characters)."""
    if dotted in _OPTIONAL_DATA and isinstance(value, str) and value.strip().lower() in ("", "none"):
        return None
    if dotted in _TEXT_KEYS and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if value is None:
        if default is not None and not isinstance(default, str) and dotted not in _NULLABLE:
            raise ConfigError(f"Config key {dotted!r} cannot be null (default: {default!r}).")
        return None
    if default is None:
        return value  # no fixed type: the stage's own validation checks it
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(f"Config key {dotted!r} must be true or false, got {value!r}.")
        return value
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"Config key {dotted!r} must be a number, got {value!r}.")
        if isinstance(default, int) and isinstance(value, float):
            if not value.is_integer():
                raise ConfigError(f"Config key {dotted!r} must be an integer, got {value!r}.")
            return int(value)
        return value
    if isinstance(default, list):
        if isinstance(value, str) and dotted in _LISTS_FROM_TEXT:
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"Config key {dotted!r} must be a list, got {value!r}.")
        return value
    if dotted == "align.enabled":
        return value  # auto | true | false, checked in validate_run_config
    if not isinstance(value, str):
        raise ConfigError(f"Config key {dotted!r} must be text, got {value!r}.")
    return value


def default_config_text() -> str:
    """The embedded default run configuration, as YAML text (also what ``hsr run --print-config`` shows)."""
    return resources.files("hsr").joinpath("configs/default.yaml").read_text()


def default_config() -> dict[str, Any]:
    return load_yaml(default_config_text())


def _merge(base: dict[str, Any], update: dict[str, Any], where: str = "") -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in update.items():
        dotted = f"{where}{key}"
        if key not in base:
            known = ", ".join(sorted(map(str, base)))
            raise ConfigError(f"Unknown config key {dotted!r}; known keys here: {known}.")
        if isinstance(base.get(key), dict):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"Config key {dotted!r} must be a mapping, got {value!r}.")
            out[key] = _merge(base[key], value, f"{dotted}.")
        else:
            out[key] = _typed(dotted, base.get(key), value)
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
        value = load_yaml(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"--set {key}: cannot parse value {raw!r}: {exc}") from exc
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
            user = load_yaml(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{p}: not valid YAML: {exc}") from exc
        except UnicodeDecodeError:
            raise ConfigError(f"{p}: not valid UTF-8 text.") from None
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
    from ..loading import check_device, resolve_dtype

    check_device(config["device"])
    resolve_dtype(config["dtype"])
    validate_stage_options(config)


# ---------------------------------------------------------------------------- stage options
# The run config's sections map onto the stages' own option dataclasses here, and only here: the
# pipeline builds its stages from these, and validation builds all of them before any model loads.

EVALUABLE = ("base", "dense", "pruned", "realigned", "control")  # base = the input model before align


def align_options(config: dict[str, Any]):
    from ..align import AlignConfig

    cfg = {k: v for k, v in config["align"].items() if k != "enabled"}
    try:
        options = AlignConfig(**{**cfg, "modules": tuple(cfg["modules"]), "max_length": config["max_length"],
                                 "seed": config["seed"]})
    except TypeError as exc:
        raise ConfigError(f"align: {exc}") from exc
    options.validate()
    return options


def prune_options(config: dict[str, Any], method: str | None = None, sparsity: str | None = None):
    from ..pruning import PruneConfig, Sparsity

    cfg = config["prune"]
    options = PruneConfig(
        method=method or cfg["method"],
        sparsity=Sparsity.parse(str(sparsity or cfg["sparsity"])),
        max_length=config["max_length"],
        seed=config["seed"],
        include_mlp=bool(cfg["include_mlp"]),
        block_size=cfg["block_size"],
        percdamp=float(cfg["percdamp"]),
    )
    options.validate()
    return options


def head_options(config: dict[str, Any]):
    from ..heads import HeadScoreConfig

    cfg = config["heads"]
    options = HeadScoreConfig(
        score=cfg["score"], mode=cfg["mode"], engine=cfg["engine"], rank=cfg["rank"],
        sahara_steps=cfg["sahara_steps"], max_length=config["max_length"], eps=cfg["eps"],
        batch_heads=cfg["batch_heads"], approx_top_k=cfg["approx_top_k"], seed=config["seed"],
        approx_top_h=cfg["approx_top_h"] if cfg["approx_top_h"] is not None else config["realign"]["top_h"],
        approx_tolerance=cfg["approx_tolerance"], approx_adaptive=bool(cfg["approx_adaptive"]),
        prefix_reuse=cfg["prefix_reuse"], max_batch_tokens=cfg["max_batch_tokens"],
    )
    options.validate()
    return options


def realign_options(config: dict[str, Any], random_heads: bool):
    from ..realign import RealignConfig

    cfg = config["realign"]
    options = RealignConfig(
        top_h=cfg["top_h"], p=float(cfg["p"]), q=float(cfg["q"]), max_p=float(cfg["max_p"]),
        per_row=cfg["per_row"], include_mlp=cfg["include_mlp"], whole_head=cfg["whole_head"],
        random_heads=random_heads, seed=config["seed"], preserve_nm=cfg["preserve_nm"], budget=cfg["budget"],
    )
    options.validate()
    return options


def eval_options(config: dict[str, Any]):
    from ..evaluation import EvalConfig
    from ..evaluation.judges import check_judge_spec

    cfg = config["evaluate"]
    options = EvalConfig(
        harmful=cfg["harmful"], benign=cfg["benign"], limit=cfg["limit"], max_new_tokens=cfg["max_new_tokens"],
        batch_size=cfg["batch_size"], judge=cfg["judge"], ppl_text=cfg["ppl_text"], mcq=cfg["mcq"],
        max_length=config["max_length"], seed=config["seed"], mcq_limit=cfg["mcq_limit"],
        mcq_method=cfg["mcq_method"], ppl_max_tokens=cfg["ppl_max_tokens"], suites=tuple(cfg["suites"]),
        ppl_stride=cfg["ppl_stride"],
    )
    options.validate()
    check_judge_spec(options.judge)
    unknown = [m for m in cfg["models"] if m not in EVALUABLE]
    if unknown or not cfg["models"]:
        raise ConfigError(f"evaluate.models: unknown {unknown}; choose from {', '.join(EVALUABLE)}.")
    return options


def validate_stage_options(config: dict[str, Any]) -> None:
    """Build every enabled stage's options, so a bad value fails before the first model loads."""
    if config["align"]["enabled"] is not False:
        align_options(config)
    if not config["prune"]["pruned"]:
        prune_options(config)
    head_options(config)
    realign_options(config, random_heads=False)
    if config["evaluate"]["enabled"]:
        eval_options(config)
