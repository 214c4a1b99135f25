"""Pruning baselines HSR starts from: magnitude, Wanda, SparseGPT (unstructured or N:M)."""

from .masks import Sparsity, is_valid_nm, nm_mask, select_mask, unstructured_mask
from .methods import METHODS, get_method, register, sparsegpt_prune, wanda_scores
from .prune import MASK_FILE, SUMMARY_FILE, PruneConfig, PruneResult, prune_model, save_pruned, seed_everything

__all__ = [
    "MASK_FILE",
    "METHODS",
    "SUMMARY_FILE",
    "PruneConfig",
    "PruneResult",
    "Sparsity",
    "get_method",
    "is_valid_nm",
    "nm_mask",
    "prune_model",
    "save_pruned",
    "seed_everything",
    "register",
    "select_mask",
    "sparsegpt_prune",
    "unstructured_mask",
    "wanda_scores",
]
