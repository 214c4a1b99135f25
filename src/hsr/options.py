"""One declaration per option: the stage dataclasses' fields carry type, default, help and choices.

The CLI flags of every command and the sections of ``hsr run``'s YAML config are derived from
those fields here, so an option is declared, typed, documented and checked in one place and
the two ways of setting it cannot drift apart.

A field declared with :func:`option` becomes the flag ``--field-name`` (or ``--FLAG`` when
``flag`` is given) and the YAML key ``section.field_name``. Types come from the annotation:
``bool`` (``--x/--no-x``), ``int``, ``float``, ``str``, ``tuple[str, ...]``/``list[str]`` (also
written as comma-separated text), any of them ``| None`` (the words ``none``/``null`` switch it
off), and classes with a ``parse`` classmethod such as :class:`~hsr.pruning.masks.Sparsity`
(kept as text in YAML, parsed when the stage's options are built).
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import types
import typing
from dataclasses import MISSING, dataclass
from typing import Any, Callable, Iterable

import yaml

from .errors import ConfigError
from .values import shown
from .yaml_config import load_yaml

NONE_WORDS = ("none", "null", "")
#: Integers beyond a signed 64-bit value overflow torch and NumPy; none is declared larger.
INT_LIMIT = 2**63 - 1
#: Seeds seed NumPy's legacy generator too, which takes 32 bits.
SEED_LIMIT = 2**32 - 1


def option(
    default: Any = MISSING,
    *,
    help: str,
    choices: tuple[Any, ...] | None = None,
    flag: str | None = None,
    factory: Callable[[], Any] | None = None,
    minimum: float | None = None,
    maximum: float | None = None,
    zero_is_none: bool = False,
) -> Any:
    """A dataclass field with what the CLI and the run config need to know about it.

    ``minimum``/``maximum``: allowed range of a number (integers are always within 64 bits, floats
    always finite); ``zero_is_none``: on the command line 0 means "unset" (e.g. ``--limit 0`` = every
    prompt)."""
    meta = {"help": help, "choices": choices, "flag": flag, "minimum": minimum, "maximum": maximum,
            "zero_is_none": zero_is_none}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def seed_option(help: str) -> Any:
    """The ``seed`` field every stage declares: 0 to 2**32 - 1, what every generator it seeds accepts."""
    return option(0, help=help, minimum=0, maximum=SEED_LIMIT)


@dataclass(frozen=True)
class Spec:
    """One option, resolved from a dataclass field."""

    name: str
    kind: Any  # bool, int, float, str, list, or a class with .parse
    optional: bool
    default: Any
    help: str
    choices: tuple[Any, ...] | None
    flag: str
    minimum: float | None
    maximum: float | None
    zero_is_none: bool

    def plain_default(self) -> Any:
        """The default as YAML writes it (text for parsed types, lists for tuples)."""
        return to_plain(self.default)


def to_plain(value: Any) -> Any:
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "describe"):
        return value.describe()
    return value


def _resolve(annotation: Any) -> tuple[Any, bool]:
    """``(kind, optional)`` of a field annotation."""
    optional = False
    args = typing.get_args(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        kinds = [a for a in args if a is not type(None)]
        optional = len(kinds) < len(args)
        if len(kinds) != 1:
            return tuple(kinds), optional  # e.g. str | bool: checked against choices
        annotation = kinds[0]
    if typing.get_origin(annotation) in (tuple, list):
        return list, optional
    return annotation, optional


def specs(cls: type, skip: Iterable[str] = ()) -> list[Spec]:
    """The options declared on dataclass ``cls`` (fields made with :func:`option`), minus ``skip``."""
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.name in skip or "help" not in f.metadata:
            continue
        kind, optional = _resolve(hints[f.name])
        default = f.default_factory() if f.default is MISSING and f.default_factory is not MISSING else f.default
        m = f.metadata
        out.append(Spec(f.name, kind, optional, default, m["help"], m["choices"], m["flag"] or f.name.replace("_", "-"),
                        m["minimum"], m.get("maximum"), m["zero_is_none"]))
    return out


# ------------------------------------------------------------------------------------------ values
def plain_value(spec: Spec, value: Any, where: str, check: bool = True) -> Any:
    """``value`` checked against ``spec`` and normalized to what YAML holds; ``where`` names it in errors.
    ``check=False`` converts the type only (choices and ranges are checked later, as one-line errors)."""
    if isinstance(value, str) and value.strip().lower() in NONE_WORDS and spec.optional and spec.kind is not bool:
        return None
    if value is None:
        if spec.optional:
            return None
        raise ConfigError(f"{where} cannot be null (default: {spec.plain_default()!r}).")
    kind = spec.kind
    if isinstance(kind, tuple):  # a small union such as auto | true | false
        value = {"true": True, "false": False}.get(value.strip().lower(), value) if isinstance(value, str) else value
    elif kind is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {shown(value)}.")
    elif kind in (int, float):
        value = _number(kind, value, where)
    elif kind is list:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where} must be a list, got {shown(value)}.")
        value = list(value)
    elif kind is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be text, got {shown(value)}.")
    elif hasattr(kind, "parse"):
        if isinstance(value, bool) or not isinstance(value, (str, int, float)):
            raise ConfigError(f"{where} must be text, got {shown(value)}.")
        value = str(value)
        if check:
            kind.parse(value)  # fails here, with its own message, rather than inside the stage
    if check:
        _check_choices(spec, value, where)
    return value


def _number(kind: type, value: Any, where: str) -> Any:
    if isinstance(value, str):
        try:
            value = float(value) if kind is float or any(c in value for c in ".eE") else int(value)
        except ValueError:
            raise ConfigError(f"{where} must be a number, got {shown(value)}.") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {shown(value)}.")
    check_number(kind, value, where)
    if kind is int and isinstance(value, float):
        value = int(value)
    return value


def check_number(kind: type, value: int | float, where: str) -> None:
    """What every number option needs whatever its declaration: finite (``nan``, ``inf`` would poison
    every computation they touch), an integer where one is declared, and within 64 bits."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{where} must be a finite number, got {value!r}.")
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise ConfigError(f"{where} must be an integer, got {value!r}.")
    if abs(value) > INT_LIMIT:
        raise ConfigError(f"{where} is too large: {shown(value, 40)} (at most {INT_LIMIT:,}).")


def _check_choices(spec: Spec, value: Any, where: str) -> None:
    items = value if isinstance(value, list) else [value]
    if spec.choices is not None:
        bad = [v for v in items if v not in spec.choices]
        if bad:
            names = ", ".join(str(c).lower() if isinstance(c, bool) else str(c) for c in spec.choices)
            raise ConfigError(f"{where} must be one of {names}, got {shown(value)}.")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if spec.minimum is not None and value < spec.minimum:
            raise ConfigError(f"{where} must be at least {_num(spec.minimum)}, got {shown(value, 40)}.")
        if spec.maximum is not None and value > spec.maximum:
            raise ConfigError(f"{where} must be at most {_num(spec.maximum)}, got {shown(value, 40)}.")


def _num(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) or float(x).is_integer() and abs(x) >= 1e6 else f"{x:g}"


def check_declared(obj: Any, prefix: str = "") -> None:
    """Check a stage dataclass's values against its fields' declarations (type, choices, minimum), for
    objects built in Python as well as from flags and YAML (which :func:`build` checks on the way in).
    ``prefix`` names the section in errors (e.g. ``align.``)."""
    for spec in specs(type(obj)):
        value = getattr(obj, spec.name)
        where = prefix + spec.name
        if value is None:
            if not spec.optional:
                raise ConfigError(f"{where} cannot be null (default: {spec.plain_default()!r}).")
            continue
        if spec.kind in (int, float) and (isinstance(value, bool) or not isinstance(value, (int, float))
                                          or (spec.kind is int and not isinstance(value, int))):
            raise ConfigError(f"{where} must be {'an integer' if spec.kind is int else 'a number'}, got {shown(value)}.")
        if spec.kind in (int, float):
            check_number(spec.kind, value, where)
        if spec.kind is bool and not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {shown(value)}.")
        _check_choices(spec, list(value) if isinstance(value, tuple) else value, where)


def rich_value(spec: Spec, value: Any) -> Any:
    """A plain (YAML) value as the dataclass holds it."""
    if value is None:
        return None
    if spec.kind is list:
        return tuple(value) if isinstance(spec.default, tuple) else list(value)
    if hasattr(spec.kind, "parse") and not isinstance(spec.kind, tuple):
        return spec.kind.parse(value)
    return value


def build(cls: type, values: dict[str, Any], fixed: dict[str, Any] | None = None, where: str = "",
          cli: bool = False) -> Any:
    """``cls`` from plain ``values`` (missing keys take their defaults) plus ``fixed`` fields, validated.
    Errors name the key as ``where + name``, or the flag when ``cli``."""
    by_name = {s.name: s for s in specs(cls)}
    kwargs = dict(fixed or {})
    for name, value in values.items():
        spec = by_name.get(name)
        if spec is None:
            known = ", ".join(sorted(by_name))
            raise ConfigError(f"Unknown option {where}{shown(name)}; known: {known}.")
        label = f"--{spec.flag}" if cli else f"{where}{name}"
        kwargs[name] = rich_value(spec, plain_value(spec, value, label))
    obj = cls(**kwargs)
    if hasattr(obj, "validate"):
        obj.validate()
    return obj


def section_defaults(cls: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The plain defaults of ``cls``'s options: one YAML section."""
    return {s.name: s.plain_default() for s in specs(cls, skip)}


# ------------------------------------------------------------------------------------------ CLI
class _ExplicitNone:
    """A flag set to none/null (or 0 where that means unset): unlike an absent flag, it overrides defaults."""

    def __repr__(self) -> str:
        return "none"


EXPLICIT_NONE = _ExplicitNone()


def _text_type(spec: Spec) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        if spec.zero_is_none and text.strip() == "0":
            return EXPLICIT_NONE
        try:
            value = plain_value(spec, text, f"--{spec.flag}", check=False)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return EXPLICIT_NONE if value is None else value

    parse.__name__ = getattr(spec.kind, "__name__", "value")
    return parse


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: Iterable[str] = (), defaults: dict[str, Any] | None = None) -> None:
    """One flag per option of ``cls``. Unset flags stay ``None`` so the dataclass default applies."""
    for spec in specs(cls, skip):
        shown = (defaults or {}).get(spec.name, spec.plain_default())
        shown = ",".join(map(str, shown)) if isinstance(shown, list) else shown
        text = f"{spec.help} (default: {'none' if shown is None else shown})".replace("%", "%%")
        if spec.kind is bool:
            parser.add_argument(f"--{spec.flag}", dest=spec.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
            continue
        choices = spec.choices if spec.kind is not list and not isinstance(spec.kind, tuple) else None
        parser.add_argument(f"--{spec.flag}", dest=spec.name, type=_text_type(spec), default=None,
                            choices=choices, metavar=None if choices else spec.name.upper(), help=text)


def given(args: argparse.Namespace, cls: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The options of ``cls`` the user set on the command line (flags left unset are omitted)."""
    out = {}
    for spec in specs(cls, skip):
        value = getattr(args, spec.name, None)
        if value is not None:
            out[spec.name] = None if value is EXPLICIT_NONE else value
    return out


def from_args(args: argparse.Namespace, cls: type, fixed: dict[str, Any] | None = None,
              skip: Iterable[str] = (), defaults: dict[str, Any] | None = None) -> Any:
    """``cls`` built from the flags :func:`add_flags` declared (unset ones take ``defaults``, then the field's)."""
    values = {**(defaults or {}), **given(args, cls, skip)}
    return build(cls, values, fixed, cli=True)


# ------------------------------------------------------------------------------------------ YAML text
def yaml_lines(cls_values: dict[str, Any], cls: type, skip: Iterable[str] = (), indent: str = "") -> list[str]:
    """``key: value  # help`` lines for one section, values from ``cls_values``."""
    lines = []
    for spec in specs(cls, skip):
        value = cls_values[spec.name]
        dumped = yaml.safe_dump(value, default_flow_style=True, width=1000).strip()
        if dumped.endswith("\n..."):
            dumped = dumped[: -len("\n...")]
        dumped = dumped.removesuffix("...").strip()
        if isinstance(value, str) and dumped == value and _needs_quotes(value):
            dumped = f'"{value}"'
        lines.append(f"{indent}{spec.name}: {dumped}  # {spec.help}")
    return lines


def _needs_quotes(text: str) -> bool:
    try:
        return load_yaml(text) != text
    except yaml.YAMLError:
        return True
