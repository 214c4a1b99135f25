"""Head-level safety attribution: Ships, generalized Ships, contrastive Ships and Sahara, with exact fast engines.

``score_heads(loaded, samples, HeadScoreConfig(...))`` ablates every query head on harmful
prompts and scores how much the model's safety-relevant outputs move; ``save_head_scores``
writes ``heads.json`` (the pipeline contract) and a ``heads.png`` heatmap. Scores are plugins
(:mod:`hsr.heads.scores`): ``register_score`` adds one.
"""

from .ablation import MODES, ablate_heads, gates_for, head_gates, scale_heads
from .config import ENGINES, HeadScoreConfig
from .scores import SCORES, HeadScore, get_score, register_score
from .formulas import kl_divergence, principal_angles, subspace_angle_degrees, top_left_singular
from .results import (
    HEADS_FILE,
    HEATMAP_FILE,
    HeadScores,
    HeadsFile,
    HeadsFileError,
    load_head_scores,
    read_heads,
    plot_head_heatmap,
    save_head_scores,
    top_k_recall,
)
from .attribution import score_heads

__all__ = [
    "ENGINES",
    "HEADS_FILE",
    "HEATMAP_FILE",
    "MODES",
    "SCORES",
    "HeadScore",
    "HeadScoreConfig",
    "HeadScores",
    "ablate_heads",
    "gates_for",
    "get_score",
    "head_gates",
    "kl_divergence",
    "HeadsFile",
    "HeadsFileError",
    "load_head_scores",
    "read_heads",
    "register_score",
    "plot_head_heatmap",
    "principal_angles",
    "save_head_scores",
    "scale_heads",
    "score_heads",
    "subspace_angle_degrees",
    "top_k_recall",
    "top_left_singular",
]
