"""Neuron-level Hierarchical Safety Realignment: restore safety-critical pruned weights in safety heads.

Pipeline: :func:`compute_importance` (utility and safety data, dense model) ->
:func:`realign_pruned` (candidates ``(S(q) ∩ U(max_p)) − U(p)`` inside the pruning mask and the
top safety heads' slices; or, with ``selection="taylor"``, the same number ranked by a first-order
refusal-loss estimate) -> :func:`save_realigned`.
"""

from .external import ModelMismatchError, check_compatible, infer_masks, load_pruned_masks
from .importance import IMPORTANCE_METHODS, ImportanceConfig, compute_importance, load_importance, save_importance
from .ranking import HeadsFileError, check_ranking, select_heads
from .restore import (
    RESTORED_FILE,
    SELECTIONS,
    RealignConfig,
    RealignError,
    RealignResult,
    plan_taylor,
    realign_pruned,
    save_realigned,
    taylor_regions,
)
from .selection import candidate_mask, top_fraction_mask, validate_fractions
from .slices import HeadGeometry, head_bias_mask, head_weight_mask
from .taylor import TaylorScores, taylor_scores

__all__ = [
    "IMPORTANCE_METHODS",
    "RESTORED_FILE",
    "SELECTIONS",
    "HeadGeometry",
    "HeadsFileError",
    "ImportanceConfig",
    "ModelMismatchError",
    "RealignConfig",
    "RealignError",
    "RealignResult",
    "TaylorScores",
    "candidate_mask",
    "check_ranking",
    "check_compatible",
    "compute_importance",
    "head_bias_mask",
    "head_weight_mask",
    "infer_masks",
    "load_importance",
    "load_pruned_masks",
    "plan_taylor",
    "realign_pruned",
    "save_importance",
    "save_realigned",
    "select_heads",
    "taylor_regions",
    "taylor_scores",
    "top_fraction_mask",
    "validate_fractions",
]
