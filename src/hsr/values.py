"""Pure checks that a value read from a user's file or flag makes sense, before anything uses it.

Each check returns the value (or None) or raises an :class:`~hsr.errors.HsrError` subclass given by
the caller, so readers of different files keep their own error types. Values echoed in messages go
through :func:`shown`, so a huge value (a YAML expansion, a megabyte line) cannot flood the terminal.
"""

from __future__ import annotations

import math
import reprlib
from typing import Any, Iterable

from .errors import HsrError

#: Rounding allowed when comparing an interval with its value.
_SLACK = 1e-9
#: Longest echo of a value in an error message.
SHOWN_CHARS = 80


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to about ``limit`` characters; nested or long containers are abbreviated
    while being printed (reprlib), so a huge value is never expanded in full."""
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 3, 6, 6, 6, 6
    r.maxstring, r.maxother, r.maxlong = limit, limit, limit
    text = r.repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def bounded(message: str, limit: int = 2000) -> str:
    """``message`` cut to ``limit`` characters: the last guard before a message reaches the terminal."""
    return message if len(message) <= limit else message[:limit] + f"… ({len(message) - limit} more characters)"


def is_number(value: Any) -> bool:
    """A JSON/YAML number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def is_finite_number(value: Any) -> bool:
    return is_number(value) and math.isfinite(value)


def is_count(value: Any) -> bool:
    """A non-negative integer (JSON ``3``, not ``3.0``, ``"3"`` or ``true``)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def check_rate(rate: Any, where: str, error: type[HsrError]) -> None:
    """A rate as metrics.json holds it: ``value``, ``ci_low`` and ``ci_high`` finite in [0, 1] with
    ``ci_low <= value <= ci_high``, and, when present, counts ``0 <= k <= n`` with ``value == k / n``."""
    if not isinstance(rate, dict):
        raise error(f"{where} must be an object with value, ci_low and ci_high, got {shown(rate)}.")
    if "k" in rate or "n" in rate:
        k, n = rate.get("k"), rate.get("n")
        if not (is_count(k) and is_count(n)):
            raise error(f"{where}: k and n must be non-negative integers, got k={shown(k)}, n={shown(n)}.")
        if k > n:
            raise error(f"{where}: k={k} exceeds n={n} (more events than prompts).")
    for key in ("value", "ci_low", "ci_high"):
        v = rate.get(key)
        if not is_finite_number(v) or not 0.0 <= v <= 1.0:
            raise error(f"{where}.{key} must be a number between 0 and 1, got {shown(v)}.")
    if not rate["ci_low"] - _SLACK <= rate["value"] <= rate["ci_high"] + _SLACK:  # float rounding at k = 0 or n
        raise error(f"{where}: the interval [{rate['ci_low']}, {rate['ci_high']}] does not contain the value "
                    f"{rate['value']}.")
    if is_count(rate.get("k")) and rate.get("n") and abs(rate["value"] - rate["k"] / rate["n"]) > 1e-6:
        raise error(f"{where}: value {rate['value']} is not k/n = {rate['k']}/{rate['n']}.")


def check_scores(scores: Iterable[tuple[str, Any]], error: type[HsrError]) -> None:
    """Every ``(where, score)`` a finite number: NaN, Infinity and text would give an arbitrary ranking."""
    for where, score in scores:
        if not is_finite_number(score):
            raise error(f"{where}: score must be a finite number, got {shown(score)}.")


def first_surrogate(obj: Any, where: str = "") -> str | None:
    """Where (as ``key[index]...``) the first text holding a lone UTF-16 surrogate sits in parsed JSON/YAML,
    or None. Such text (JSON ``"\\ud800"``) cannot be written as UTF-8 or tokenized."""
    stack: list[tuple[str, Any]] = [(where, obj)]
    while stack:
        at, item = stack.pop()
        if isinstance(item, str):
            if not _encodes(item):
                return at or "the text"
        elif isinstance(item, dict):
            for key, value in item.items():
                if isinstance(key, str) and not _encodes(key):
                    return f"{at}[key]" if at else "a key"
                stack.append((f"{at}.{key}" if at else str(key), value))
        elif isinstance(item, (list, tuple)):
            stack.extend((f"{at}[{i}]", v) for i, v in enumerate(item))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def duplicates(items: Iterable[Any]) -> list[Any]:
    """The items that occur more than once, in first-seen order."""
    seen: set[Any] = set()
    twice: list[Any] = []
    for item in items:
        if item in seen and item not in twice:
            twice.append(item)
        seen.add(item)
    return twice
