"""Safety alignment of the dense model: the controlled testbed in which pruning can remove safety.

``align_model`` fine-tunes a model on harmful prompts with refusals and benign prompts with its own
answers; ``save_aligned`` writes an ordinary Hugging Face checkpoint plus ``summary.json``.
"""

from __future__ import annotations

import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_output_dir, write_json
from ..loading import LoadedModel
from .config import AlignConfig
from .data import build_alignment_set
from .train import finetune

SUMMARY_FILE = "summary.json"

__all__ = ["AlignConfig", "align_model", "save_aligned", "build_alignment_set", "finetune"]


def align_model(loaded: LoadedModel, config: AlignConfig, progress: bool = False) -> dict[str, Any]:
    """Fine-tune ``loaded`` in place; return a summary (settings, data counts, losses, seconds)."""
    config.validate()
    from ..placement import is_offloaded

    if is_offloaded(loaded.model):
        raise ConfigError("align fine-tunes every weight at once, which offloaded weights (CPU or disk) do not allow; "
                          "drop --offload-folder or raise --max-memory so the model fits its devices.")
    start = time.perf_counter()
    examples = build_alignment_set(loaded, config, progress=progress)
    built = time.perf_counter()
    losses = finetune(loaded, examples, config, progress=progress)
    kinds = [e.meta.get("kind") for e in examples]
    return {
        "config": asdict(config),
        "examples": len(examples),
        "refusal_examples": kinds.count("refusal"),
        "helpful_examples": kinds.count("helpful"),
        "epoch_losses": losses,
        "data_seconds": round(built - start, 1),
        "train_seconds": round(time.perf_counter() - built, 1),
    }


def save_aligned(out: str | Path, loaded: LoadedModel, summary: dict[str, Any], overwrite: bool = False) -> Path:
    """Write the aligned model, its processor/tokenizer and summary.json atomically."""
    with atomic_output_dir(out, overwrite=overwrite) as tmp:
        loaded.model.save_pretrained(tmp, safe_serialization=True)
        loaded.processor.save_pretrained(tmp)
        write_json(tmp / SUMMARY_FILE, summary)
    return Path(out).expanduser().resolve()
