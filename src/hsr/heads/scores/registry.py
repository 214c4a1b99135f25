"""The registry of head scores by name; :data:`SCORES` is a live view of its names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Iterator, TypeVar

from ...errors import ConfigError
from .base import PROMPT_SETS, HeadScore

_REGISTRY: dict[str, HeadScore] = {}
T = TypeVar("T", bound=type)


def register_score(cls: T) -> T:
    """Class decorator: register one instance of the :class:`HeadScore` subclass ``cls`` under ``cls.name``
    (a later registration of the same name replaces the earlier one)."""
    score = cls()
    if not isinstance(score, HeadScore) or not getattr(score, "name", ""):
        raise TypeError(f"{cls!r} is not a named HeadScore")
    unknown = [p for p in score.needs.prompts if p not in PROMPT_SETS]
    if unknown or "harmful" not in score.needs.prompts:
        raise TypeError(f"{score.name}: needs.prompts must include harmful and be among {PROMPT_SETS}, got {score.needs.prompts}")
    _REGISTRY[score.name] = score
    return cls


def unregister_score(name: str) -> None:
    """Forget a registered score (for tests that define their own)."""
    _REGISTRY.pop(name, None)


def get_score(name: "str | HeadScore") -> HeadScore:
    """The registered score of that name (a :class:`HeadScore` is returned as it is)."""
    if isinstance(name, HeadScore):
        return name
    if name not in _REGISTRY:
        raise ConfigError(f"Unknown head score {name!r}; expected one of {', '.join(_REGISTRY)}.")
    return _REGISTRY[name]


class ScoreNames(Sequence):
    """The registered scores' names, in registration order, always current (flags' choices read it)."""

    def __getitem__(self, i):  # type: ignore[override]
        return tuple(_REGISTRY)[i]

    def __len__(self) -> int:
        return len(_REGISTRY)

    def __iter__(self) -> Iterator[str]:
        return iter(tuple(_REGISTRY))

    def __contains__(self, name: object) -> bool:
        return name in _REGISTRY

    def __repr__(self) -> str:
        return repr(tuple(_REGISTRY))


SCORES = ScoreNames()


def unit_of(name: str) -> str:
    """The unit of a score's values (``"score"`` for a name that is not registered)."""
    score = _REGISTRY.get(name)
    return score.unit if score is not None else "score"
