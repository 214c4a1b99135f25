"""One function per stage that does the stage's work: ``hsr run``'s cached stages and the matching
``hsr`` commands both call these, so a stage computes the same thing whichever way it is run.

Each takes typed settings, a loader and an output folder. What differs between the callers stays
with them: the pipeline's caching and fingerprints, a command's flags, output checks and summary line.
Models are loaded through ``load(source, share=1)`` (the caller's device, dtype and placement;
``share``: models held at once, which split the memory budgets).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from ..data import Sample, load_samples
from ..distributed import SINGLE, Dist
from ..loading import LoadedModel

if TYPE_CHECKING:
    from ..align import AlignConfig
    from ..architecture import ArchInfo
    from ..evaluation import EvalConfig
    from ..heads import HeadScoreConfig, HeadScores
    from ..pruning import PruneConfig, PruneResult
    from ..realign import ImportanceConfig, RealignConfig, RealignResult
    from .sections import PruneData

Loader = Callable[..., LoadedModel]  # load(source, share=1) -> the model, placed as the caller says


def align_stage(load: Loader, source: str | Path, options: AlignConfig, out: str | Path, progress: bool,
                overwrite: bool = True) -> tuple[dict[str, Any], Path]:
    """Safety-tune ``source`` and save it to ``out``; returns the summary and the folder written."""
    from ..align import align_model, save_aligned

    loaded = load(source)
    summary = align_model(loaded, options, progress=progress)
    summary["base_model"] = str(source)
    return summary, save_aligned(out, loaded, summary, overwrite=overwrite)


@dataclass
class Pruned:
    result: PruneResult
    samples: int  # calibration samples used (none for magnitude)
    path: Path


def prune_stage(load: Loader, source: str | Path, options: PruneConfig, data: PruneData, out: str | Path,
                progress: bool, overwrite: bool = True) -> Pruned:
    """Prune ``source`` (calibrating on ``data`` unless magnitude) and save model, mask and summary to ``out``."""
    from ..pruning import prune_model, save_pruned

    calibrates = options.method != "magnitude"
    samples = load_samples(data.data, limit=data.n_samples, seed=options.seed) if calibrates else []
    loaded = load(source)
    result = prune_model(loaded, samples, options, progress=progress)
    result.summary["data"] = data.data if samples else None
    return Pruned(result, len(samples), save_pruned(out, loaded, result, overwrite=overwrite))


@dataclass
class Scored:
    scores: HeadScores
    arch: ArchInfo  # of the scored model (its layer and head counts)


def heads_stage(load: Loader, source: str | Path, samples: Sequence[Sample], options: HeadScoreConfig,
                checkpoint: Path | None, progress: bool, dist: Dist = SINGLE,
                benign: Sequence[Sample] | None = None, dense: str | Path | None = None) -> Scored:
    """Score every head of ``source`` on the harmful ``samples`` (and ``benign`` ones, for a score that
    needs them), resuming from ``checkpoint``. For a score of a dense/pruned pair, ``source`` is the
    pruned model and ``dense`` its dense model (both loaded, sharing the memory budgets). Every rank of
    a several-process job gets the result; the caller writes it (:func:`write_heads`) once."""
    from ..heads import score_heads

    share = 1 if dense is None else 2
    loaded = load(source, share=share)
    dense_loaded = None if dense is None else load(dense, share=share)
    scores = score_heads(loaded, samples, options, checkpoint_dir=checkpoint, progress=progress, dist=dist,
                         benign=benign, dense=dense_loaded)
    return Scored(scores, loaded.arch)


def write_heads(out: str | Path, scored: Scored, model_label: str) -> Path:
    """``heads.json``, its heatmap and timings into ``out``."""
    from ..heads import save_head_scores

    return save_head_scores(out, scored.scores, model_label=model_label)


def importance_stage(dense: LoadedModel, samples: Mapping[str, Sequence[Sample]], options: ImportanceConfig,
                     progress: bool, folder: Path | None = None, stream: bool = False,
                     save: bool = False) -> dict[str, Any]:
    """Importance scores of ``dense`` on each kind's samples (``utility``, ``safety``).

    ``stream``: Wanda scores go to ``folder/KIND.safetensors`` layer by layer (bounded memory, for
    placed models); ``save``: every kind's scores are written there and none is kept in memory.
    Returns the scores kept, by kind (streamed ones as read back from their file)."""
    from ..realign import compute_importance, save_importance

    kept: dict[str, Any] = {}
    for kind, rows in samples.items():
        target = folder / f"{kind}.safetensors" if folder is not None else None
        streamed = target if stream and options.method == "wanda" else None
        scores = compute_importance(dense, rows, method=options.method, max_length=options.max_length,
                                    progress=progress, out=streamed)
        if not save:
            kept[kind] = scores
        elif streamed is None:
            save_importance(scores, target)
        del scores
    return kept


def realign_stage(
    load: Loader,
    dense_source: str | Path,
    pruned_source: str | Path,
    pruned_dir: Path | None,
    ranking_of: Callable[[LoadedModel], Sequence[tuple[int, int]]],
    scores_of: Callable[[LoadedModel], tuple[Any, Any]],
    options: RealignConfig,
    out: str | Path,
    overwrite: bool = True,
    inputs: dict[str, Any] | None = None,
    refusals: Sequence[Sample] | None = None,
    max_length: int | None = None,
) -> tuple[RealignResult, Path]:
    """Restore safety-critical pruned weights of ``pruned_source`` from ``dense_source`` and save the result.

    ``ranking_of(dense)``: the head ranking, checked against the loaded dense model; ``scores_of(dense)``:
    the (utility, safety) importance scores, read or computed before the pruned model loads.
    ``inputs``: recorded in the summary; ``refusals`` (cut to ``max_length`` tokens): the safety samples
    the Taylor selection takes its gradient on (None for the set difference). The dense model is
    released before the save."""
    from ..realign import load_pruned_masks, realign_pruned, save_realigned

    dense = load(dense_source, share=2)
    ranking = ranking_of(dense)
    utility, safety = scores_of(dense)
    pruned = load(pruned_source, share=2)
    masks = load_pruned_masks(pruned_dir, dense.model, pruned.model)
    extra: dict[str, Any] = {"refusals": refusals} if refusals is not None else {}
    if max_length is not None:
        extra["max_length"] = max_length
    result = realign_pruned(dense, pruned, masks, ranking, utility, safety, options, **extra)
    if inputs is not None:
        result.summary["inputs"] = inputs
    del dense
    return result, save_realigned(out, pruned, result, overwrite=overwrite)


def evaluate_stage(load: Loader, source: str | Path, options: EvalConfig, out: Path | None, label: str,
                   progress: bool, dist: Dist = SINGLE) -> dict[str, Any]:
    """Evaluate ``source``: metrics and generations into ``out`` (rank 0's; other ranks need none)."""
    from ..evaluation import evaluate_model

    return evaluate_model(load(source), options, out, label=label, progress=progress, dist=dist)
