"""What the head-scoring engines read out of each forward, at the last prompt position.

A :class:`Readout` maps the final normed hidden state of the last prompt token (``[B, d]``, the
model's dtype) and, when it asks for them, the next-token logits there (``[B, V]``, soft-capped as
the model does) to one tensor ``[B, ...]`` per row. Every engine computes the same readouts with the
same operations, so a score built on them cannot depend on the engine. Scores declare the readouts
they need through their :class:`~hsr.heads.scores.Stat`\\ s; :func:`register_readout` adds one (e.g. a
projection of the hidden state).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Readout:
    """``read(normed_last, logits)`` -> ``[B, ...]``; ``logits`` is None unless ``needs_logits``."""

    name: str
    read: Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]
    needs_logits: bool = False


READOUTS: dict[str, Readout] = {}


def register_readout(readout: Readout) -> Readout:
    """Make ``readout`` known by its name (a second one of the same name replaces the first)."""
    READOUTS[readout.name] = readout
    return readout


def get_readout(name: str) -> Readout:
    if name not in READOUTS:
        raise ConfigError(f"Unknown head-score readout {name!r}; known: {', '.join(sorted(READOUTS))}.")
    return READOUTS[name]


#: The final normed hidden state of the last prompt token, in float64.
LAST_HIDDEN = register_readout(Readout("last_hidden", lambda hidden, _logits: hidden.double()))
#: Log-probabilities of the next token at the last prompt position, in float32.
LAST_LOGPROBS = register_readout(
    Readout("last_logprobs", lambda _hidden, logits: torch.log_softmax(logits.float(), dim=-1), needs_logits=True)
)
