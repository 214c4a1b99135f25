"""Head scores as plugins: one module per score, registered by name.

A score (:class:`HeadScore`) declares the prompt sets and models it needs, its options (a dataclass),
what it keeps of each forward (:class:`Stat`: a readout of :mod:`hsr.heads.readouts` compared with the
unablated one) and how it reduces those to one score per head. The engines run any declared readout
exactly; :func:`hsr.heads.score_heads` looks the score up here. Built in: :mod:`.ships`, :mod:`.gships`,
:mod:`.contrastive_ships`, :mod:`.refusal_direction`, :mod:`.pair` (Sahara, :mod:`hsr.heads.sahara`, is a search on top of ``gships``).
"""

from .base import PROMPT_SETS, HeadScore, Needs, NoOptions, ScoreContext, Stat, declared
from .registry import SCORES, get_score, register_score, unit_of, unregister_score
from . import ships, gships, contrastive_ships, refusal_direction, pair  # noqa: E402,F401  (registers the built-in scores, in this order)

__all__ = [
    "PROMPT_SETS",
    "SCORES",
    "HeadScore",
    "Needs",
    "NoOptions",
    "ScoreContext",
    "Stat",
    "declared",
    "get_score",
    "register_score",
    "unit_of",
    "unregister_score",
]
