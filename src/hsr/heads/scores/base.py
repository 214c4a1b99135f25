"""The head-score interface: what a score needs, reads out of each forward, and how it reduces.

A score is one :class:`HeadScore` subclass, registered by name (:func:`hsr.heads.scores.register_score`):

* ``needs``: the prompt sets it is computed on (``harmful``, and ``benign`` for contrastive scores)
  and how many models (1, or 2 for a dense/pruned pair: the engine then runs the pruned model and
  knows the dense model's readouts as its *reference*, see :mod:`.pair`);
* ``options``: a dataclass of its own options declared with :func:`hsr.options.option` (the ones
  :class:`~hsr.heads.HeadScoreConfig` carries become flags and YAML keys, see :func:`declared`);
* ``stats``: per prompt, what the engines keep of each ablated forward: a :class:`Stat` names a
  readout (:mod:`hsr.heads.readouts`) and how it is compared with the unablated one (e.g. the KL of
  the next-token distributions); these are what checkpoints store;
* :meth:`HeadScore.reduce`: the kept stats of one batch of heads -> one score per head.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Mapping

import torch

from ...errors import ConfigError
from ..readouts import Readout

#: Prompt sets a score may ask for, in the order the engines stack them.
PROMPT_SETS: tuple[str, ...] = ("harmful", "benign")
#: What a :class:`Stat` compares with: the scored model's unablated readouts or the reference model's.
STAT_BASES: tuple[str, ...] = ("base", "reference")


@dataclass(frozen=True)
class Needs:
    """The inputs a score is computed on: prompt sets (of :data:`PROMPT_SETS`) and models (1 or 2)."""

    prompts: tuple[str, ...] = ("harmful",)
    models: int = 1


@dataclass(frozen=True)
class Stat:
    """What the engines keep per prompt and ablated head: ``compare(base [1, ...], ablated [heads, ...])``
    -> ``[heads, ...]`` of the ``readout``, or, with ``compare=None``, the ablated readout itself.
    Kept under ``name`` in the engine's outputs and checkpoints (stats of one name must be the same).

    ``against``: what ``base`` is: ``"base"``, the scored model's own unablated readout, or
    ``"reference"``, the reference model's (the dense model of a dense/pruned pair)."""

    name: str
    readout: Readout
    compare: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    against: str = "base"

    def __post_init__(self) -> None:
        if self.against not in STAT_BASES:
            raise ValueError(f"Stat {self.name!r}: against must be one of {STAT_BASES}, got {self.against!r}")


@dataclass
class NoOptions:
    """Options of a score that has none."""


@dataclass(frozen=True)
class ScoreContext:
    """What a reduction sees besides the stats: the unablated readouts ``[N, ...]`` of every prompt,
    the rows of each prompt set among them, the score's options and, for a score of a dense/pruned
    pair, the reference (dense) model's readouts ``[N, ...]`` (empty otherwise)."""

    base: Mapping[str, torch.Tensor]
    sets: Mapping[str, slice]
    options: Any
    reference: Mapping[str, torch.Tensor] = field(default_factory=dict)

    def rows(self, prompt_set: str) -> slice:
        if prompt_set not in self.sets:
            raise ConfigError(f"This head score needs {prompt_set} prompts, and the engine has none.")
        return self.sets[prompt_set]


class HeadScore:
    """Base of every head score; subclass, set the class attributes, implement :meth:`reduce`."""

    name: ClassVar[str]
    #: Unit of one head's score, shown on the heatmap's colour bar.
    unit: ClassVar[str] = "score"
    help: ClassVar[str] = ""
    needs: ClassVar[Needs] = Needs()
    options: ClassVar[type] = NoOptions
    stats: ClassVar[tuple[Stat, ...]] = ()
    #: Whether the fast engine's shared-prefix reuse is on by default for this score: exact either way,
    #: but off where the score amplifies the float rounding of the separate prefix pass.
    prefix_reuse: ClassVar[bool] = True
    #: The approximate engine's estimate (``proxy``) exists for this score.
    has_proxy: ClassVar[bool] = False

    def options_from(self, config: Any) -> Any:
        """The score's options taken from ``config``'s fields of the same names (defaults for the others)."""
        names = [f.name for f in dataclasses.fields(self.options)]
        return self.options(**{n: getattr(config, n) for n in names if hasattr(config, n)})

    def check(self, options: Any, counts: Mapping[str, int]) -> None:
        """Refuse options that cannot work on ``counts`` prompts per set (before any model work)."""

    def reduce(self, data: Mapping[str, torch.Tensor], ctx: ScoreContext) -> torch.Tensor:
        """One float64 score per head ``[heads]`` from the stats ``data[name]`` ``[heads, N, ...]``."""
        raise NotImplementedError

    def proxy(self, engine: Any, config: Any, timings: dict[str, float]) -> tuple[torch.Tensor, str]:
        """The approximate engine's estimate ``[L, H]`` of every head and its name (only where ``has_proxy``)."""
        raise ConfigError(f"Head score {self.name!r} has no first-order estimate; use --engine fast or naive.")


def declared(options: type, name: str) -> Any:
    """A copy of the option field ``name`` of a score's options dataclass, to declare it again on
    :class:`~hsr.heads.HeadScoreConfig` (so its flag and YAML key come from the score's declaration)."""
    for f in dataclasses.fields(options):
        if f.name == name:
            if f.default_factory is not dataclasses.MISSING:
                return dataclasses.field(default_factory=f.default_factory, metadata=f.metadata)
            return dataclasses.field(default=f.default, metadata=f.metadata)
    raise KeyError(f"{options.__name__} declares no option {name!r}")
