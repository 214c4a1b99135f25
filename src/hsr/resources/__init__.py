"""Data files shipped with hsr (calibration sets, harmful-prompt benchmarks, held-out text).

See ``LICENSES.md`` in this folder for the origin, license and SHA256 of every file.
JSONL files follow :mod:`hsr.data`'s format (``prompt``, optional ``response``; other keys
land in ``Sample.meta``). ``heldout`` is plain text (perplexity); ``mcq`` rows also carry
``question``/``choices``/``answer`` for :mod:`hsr.evaluation.mcq`.
"""

from __future__ import annotations

from pathlib import Path

RESOURCE_DIR = Path(__file__).resolve().parent

#: name -> file in this folder (``builtin:NAME`` in data specs)
BUILTIN_DATASETS: dict[str, str] = {
    # harmful-prompt benchmarks (vendored, MIT; see LICENSES.md)
    "advbench": "advbench.jsonl",  # all 520 AdvBench harmful behaviors (Zou et al. 2023)
    "harmbench": "harmbench.jsonl",  # 200 HarmBench standard text behaviors (Mazeika et al. 2024)
    "advbench_eval": "advbench_eval.jsonl",  # seeded 100-prompt AdvBench subset: default ASR evaluation
    # hand-written / derived sets
    "utility": "utility.jsonl",  # 64 benign instruction + helpful response pairs (pruning, utility importance)
    "safety": "safety.jsonl",  # 64 AdvBench prompts outside advbench_eval + refusals (heads, safety importance)
    "benign": "benign.jsonl",  # 64 benign prompts, many superficially sensitive (over-refusal)
    # the aligned testbed's splits (scripts/make_splits.py; near-duplicate-free against test)
    "advbench_val": "advbench_val.jsonl",  # 100 AdvBench prompts for choosing settings (never reported)
    "advbench_align": "advbench_align.jsonl",  # AdvBench prompts for alignment fine-tuning only
    "align_benign": "align_benign.jsonl",  # 240 benign prompts (140 ordinary, 100 sensitive-looking): alignment
    "benign_val": "benign_val.jsonl",  # 80 benign prompts for choosing settings (over-refusal validation)
    "heldout": "heldout.txt",  # ~2.5k words of original prose (perplexity)
    "mcq": "mcq.jsonl",  # 60 four-choice questions (utility accuracy)
}


def builtin_path(name: str) -> Path:
    """Path of a built-in data file by name (``builtin:NAME`` in data specs)."""
    if name not in BUILTIN_DATASETS:
        raise ValueError(f"Unknown built-in dataset {name!r}; available: {', '.join(sorted(BUILTIN_DATASETS)) or 'none'}.")
    return RESOURCE_DIR / BUILTIN_DATASETS[name]
