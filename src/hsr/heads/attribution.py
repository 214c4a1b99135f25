"""``score_heads``: attribute safety to every attention head on harmful (and, for contrastive scores, benign) prompts."""

from __future__ import annotations

import functools
import hashlib
import logging
import math
import os
import time
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..placement import model_device
from ..calibration import layers_onloaded
from ..data import Encoded, Sample, encode
from ..distributed import SINGLE, Dist
from ..errors import ConfigError
from ..loading import LoadedModel
from .checkpoint import LayerCheckpoint
from .config import HeadScoreConfig
from .engines import EngineBase, FastEngine, Head, HeadPlan, NaiveEngine
from .pair_engines import check_pair_run, pair_engine_class
from .results import HeadScores
from .sahara import SAHARA_SCORE, sahara_search
from .scores import HeadScore, get_score
from .units import layer_scores, sharded_exact_scores

log = logging.getLogger(__name__)


def _prompt_digest(encoded: Sequence[Encoded]) -> str:
    h = hashlib.sha256()
    for enc in encoded:
        for key in sorted(enc.inputs):
            v = enc.inputs[key]
            if isinstance(v, torch.Tensor):
                h.update(key.encode())
                h.update(v.detach().cpu().contiguous().float().numpy().tobytes())
    return h.hexdigest()


def _files_digest(source: str) -> str | None:
    """Content digest of the model's files where it has local ones (:func:`hsr.fingerprint.model_digest`):
    the weight sum below only sees attention, so an edit elsewhere would resume from stale layers."""
    from ..errors import HsrError
    from ..fingerprint import model_digest

    try:
        return model_digest(source)
    except (HsrError, OSError):
        return None  # a model built in memory: the weight sum is all there is


@torch.no_grad()
def _weight_digest(loaded: LoadedModel) -> float:
    total = 0.0
    for i in layers_onloaded(loaded.arch):  # an offloaded layer is read from where accelerate keeps it
        attn = loaded.arch.attention(i)
        total += float(attn.q_proj.weight.double().abs().sum()) + float(attn.o_proj.weight.double().sum())
    return total


__all__ = ["exact_scores", "layer_scores", "make_engine", "score_heads"]


def exact_scores(
    engine: EngineBase,
    plan: HeadPlan,
    score: str | HeadScore,
    options: Any = None,
    checkpoint: LayerCheckpoint | None = None,
    tag: str = "main",
    fixed: Sequence[Head] = (),
    dist: Dist = SINGLE,
    bar: Any = None,
) -> dict[Head, float]:
    """Exact scores of the planned heads; units already in ``checkpoint`` are not recomputed.

    ``score``: a registered score or its name (the engine must keep its stats); ``options``: the
    score's options (None: its defaults).

    The work is split into per-layer chunks of ``batch_heads`` heads and, with ``dist``, across
    processes, so the scores are the same bits whatever the number of processes (see :mod:`.units`).
    """
    score = get_score(score)
    options = score.options() if options is None else options
    return sharded_exact_scores(engine, plan, score, options, checkpoint, tag, fixed, dist=dist, bar=bar)


def make_engine(loaded: LoadedModel, encoded: list[Encoded], config: HeadScoreConfig, bar: tqdm,
                sets: dict[str, slice] | None = None, dense: LoadedModel | None = None) -> EngineBase:
    """The engine ``config`` asks for, keeping the stats of every score it uses (``sets``: the rows of
    each prompt set among ``encoded``; default all harmful). With ``dense`` (a score of a dense/pruned
    pair), a pair engine that scores ``loaded`` as the pruned model. Not yet prepared."""
    stats: dict[str, Any] = {}
    for score in config.scores_used():
        for stat in score.stats:
            stats.setdefault(stat.name, stat)
    extra: dict[str, Any] = {}
    if dense is not None:
        cls, extra = pair_engine_class(config.engine), {"dense": dense}
    else:
        cls = NaiveEngine if config.engine == "naive" else FastEngine
    return cls(
        loaded,
        encoded,
        mode=config.mode,
        eps=config.effective_eps,
        stats=list(stats.values()),
        sets=sets,
        batch_heads=config.batch_heads,
        prefix_reuse=config.effective_prefix_reuse,
        max_batch_tokens=config.batch_tokens_for(model_device(loaded.model)),
        keep_streams=config.engine == "approx",
        progress=bar.update,
        **extra,
    )


def _proxy(engine: Any, config: HeadScoreConfig, dist: Dist, timings: dict[str, float] | None = None
           ) -> tuple[torch.Tensor, str]:
    """The score's estimate of every head (:meth:`HeadScore.proxy`) and its name, computed on rank 0 and
    shared, so all ranks pick the same candidates."""
    timings = {} if timings is None else timings
    proxy = None
    if dist.is_main:
        estimate, name = config.head_score.proxy(engine, config, timings)
        proxy = (estimate.cpu(), name)  # pickled tensors keep their device: a cuda:0 tensor would land on cuda:0 everywhere
    return dist.broadcast_object(proxy)


def _expected_misses(exact: dict[Head, float], proxy: torch.Tensor, rest: Sequence[Head], top_h: int) -> float:
    """Expected number of unrescored heads whose exact score beats the ``top_h``-th exact score so far.

    The estimate's error is measured on the rescored heads: ``log(exact / estimate)`` is fitted by a
    normal distribution, and each unrescored head's chance to exceed that score follows from its
    estimate. Infinite while fewer than ``top_h`` (or 5) heads (or a non-positive estimate) were rescored.
    """
    if not rest:
        return 0.0
    pairs = [(v, float(proxy[c])) for c, v in exact.items()]
    if len(pairs) < max(top_h, 5) or any(p <= 0 or v <= 0 for v, p in pairs):
        return math.inf
    kth = sorted((v for v, _ in pairs), reverse=True)[top_h - 1]
    logs = torch.tensor([math.log(v / p) for v, p in pairs], dtype=torch.float64)
    mu, sd = float(logs.mean()), max(float(logs.std()), 1e-6)
    est = torch.tensor([float(proxy[c]) for c in rest], dtype=torch.float64).clamp_min(1e-300)
    z = (math.log(kth) - est.log() - mu) / sd
    return float((0.5 * torch.erfc(z / math.sqrt(2.0))).sum())


def _rescore(engine: EngineBase, proxy: torch.Tensor, config: HeadScoreConfig, checkpoint: LayerCheckpoint | None,
             dist: Dist = SINGLE) -> tuple[dict[Head, float], dict[str, Any]]:
    """Exact scores of heads in the estimate's order, in rounds, until the top-h set is settled
    (``approx_adaptive``: expected misses at most ``approx_tolerance``) or ``approx_top_k`` heads are rescored."""
    L, H = engine.arch.num_layers, engine.arch.num_heads
    order = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda c: (-float(proxy[c]), c))
    cap = min(config.approx_top_k, L * H)
    top_h = min(config.effective_approx_top_h, cap)
    step = cap if not config.approx_adaptive else max(2, (top_h + 1) // 2)  # small rounds share forwards (MergedRows)
    done: dict[Head, float] = {}
    settled, misses, start = False, math.inf, 0
    while start < cap and not settled:
        size = step
        chunk = order[start : min(start + size, cap)]
        plan: dict[int, list[int]] = {}
        for l, h in sorted(chunk):
            plan.setdefault(l, []).append(h)
        done.update(exact_scores(engine, plan, config.head_score, config.head_score.options_from(config), checkpoint,
                                 tag=f"rescore{start}", dist=dist))
        start += len(chunk)
        misses = _expected_misses(done, proxy, order[start:], top_h)
        settled = config.approx_adaptive and misses <= config.approx_tolerance
    report = {"rescored": [[l, h] for l, h in order[:start]], "top_h": top_h, "settled": bool(settled),
              "expected_misses": misses if math.isfinite(misses) else None, "cap": cap}
    return done, report


def _approximate_scores(
    engine: Any, config: HeadScoreConfig, checkpoint: LayerCheckpoint | None, bar: Any, timings: dict[str, float],
    dist: Dist = SINGLE,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One-backward proxy for every head, then exact rescoring in the proxy's order (see :func:`_rescore`).

    Returns (scores, exact mask, report): rescored heads carry exact scores, the rest their proxy.
    The proxy runs on rank 0 only (one backward per prompt); the rescoring is split across ranks.
    """
    L, H = engine.arch.num_layers, engine.arch.num_heads
    proxy, name = _proxy(engine, config, dist, timings)
    t1 = time.perf_counter()
    rescored, report = _rescore(engine, proxy, config, checkpoint, dist)
    bar.update(max(0, bar.total - bar.n) if bar.total else 0)
    timings["rescore_s"] = time.perf_counter() - t1
    scores = proxy.clone()
    exact = torch.zeros(L, H, dtype=torch.bool)
    for (l, h), value in rescored.items():
        scores[l, h] = value
        exact[l, h] = True
    refined = min(config.approx_refine, L * H) if "refine_s" in timings else 0
    report.update({"proxy": name + ("+last-position" if refined else ""), "refined": refined,
                   "top_k": len(rescored), "proxy_scores": proxy.tolist()})
    return scores, exact, report


def _checkpoint(
    loaded: LoadedModel, encoded: list[Encoded], config: HeadScoreConfig, checkpoint_dir: str | os.PathLike | None,
    dist: Dist, dense: LoadedModel | None = None,
) -> LayerCheckpoint | None:
    """The per-unit checkpoint, keyed by model (and the dense model of a pair), prompts and options; rank 0
    owns (and may reset) its manifest.

    With several processes, the ranks first check that they all work on the same thing.
    """
    arch = loaded.arch
    key = {
        "hsr": __version__,
        "model": loaded.source,
        "class": arch.class_name,
        "shape": [arch.num_layers, arch.num_heads, arch.num_kv_heads, arch.head_dim],
        "weights": _weight_digest(loaded),
        "files": _files_digest(loaded.source),
        "prompts": _prompt_digest(encoded),
        "config": config.as_dict(),
    }
    if dense is not None:  # a pair's stats compare with the dense model: another dense model is another run
        key["dense"] = {"model": dense.source, "weights": _weight_digest(dense), "files": _files_digest(dense.source)}
    if dist.active:
        dist.check_same({k: v for k, v in key.items() if k != "model"}, "model weights, prompts or head-score options")
    if checkpoint_dir is None:
        return None
    checkpoint = LayerCheckpoint(checkpoint_dir, key) if dist.is_main else None
    dist.barrier()  # the manifest is checked (and stale files cleared) before any rank writes
    return checkpoint or LayerCheckpoint(checkpoint_dir, key, manage=False)


def score_heads(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    config: HeadScoreConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
    dist: Dist = SINGLE,
    benign: Sequence[Sample] | None = None,
    dense: LoadedModel | None = None,
) -> HeadScores:
    """Score every query head of ``loaded`` on harmful ``samples`` (prompts; responses are ignored) with
    the registered score ``config.score``; ``benign`` prompts are used by scores that need them
    (``contrastive_ships``) and ignored by the others. A score of a dense/pruned pair (``pair``) scores
    ``loaded`` as the pruned model and needs its ``dense`` model (same architecture and shapes); the
    other scores refuse one.

    With ``checkpoint_dir``, each finished unit (a layer's chunk of heads) is saved there and a
    rerun resumes from it. With ``dist`` (several processes, see :mod:`hsr.distributed`) the exact
    work is split across ranks and every rank returns the same result, identical to one process's.
    """
    config.validate()
    arch = loaded.arch
    L, H = arch.num_layers, arch.num_heads
    pair = config.head_score.needs.models == 2
    if pair and dense is None:
        raise ConfigError(f"Head score {config.score!r} needs the dense model as well as the pruned one (--dense).")
    if not pair and dense is not None:
        raise ConfigError(f"Head score {config.score!r} scores one model; a dense model is only for scores of a "
                          "dense/pruned pair (pair).")
    if pair:
        check_pair_run(dense, loaded, dist.active)
    wants_benign = "benign" in config.head_score.needs.prompts
    if wants_benign and benign is None:
        raise ConfigError(f"Head score {config.score!r} needs benign prompts (heads.benign_data / --benign-data).")
    benign = list(benign) if wants_benign and benign is not None else []
    config.check_against(len(samples), L, H, n_benign=len(benign) if wants_benign else None)
    loaded.model.eval()
    encoded = [encode(loaded.processor, s, include_response=False, max_length=config.max_length)
               for s in [*samples, *benign]]
    checkpoint = _checkpoint(loaded, encoded, config, checkpoint_dir, dist, dense)
    N = len(encoded)
    sets = {"harmful": slice(0, len(samples))}
    extras: dict[str, Any] = {}
    if wants_benign:
        sets["benign"] = slice(len(samples), N)
        extras["n_benign"] = len(benign)
    if pair:
        extras["dense_model"] = dense.source
    timings: dict[str, float] = {}
    desc = f"heads[{config.score} {config.mode} {config.engine}]"
    first = N * (2 if config.engine == "approx" else 1)  # the rest is added as each rank learns its share
    with tqdm(total=first, desc=desc, disable=not (progress and dist.is_main), unit=" prompt-layer") as bar:
        t0 = time.perf_counter()
        engine = make_engine(loaded, encoded, config, bar, sets, dense)
        engine.prepare()
        bar.update(N)
        timings["prepare_s"] = time.perf_counter() - t0
        exact = torch.ones(L, H, dtype=torch.bool)
        t0 = time.perf_counter()
        if config.engine == "approx":
            scores, exact, extras["approx"] = _approximate_scores(engine, config, checkpoint, bar, timings, dist)
        else:
            values = exact_scores(engine, {l: list(range(H)) for l in range(L)}, config.head_score,
                                  config.head_score.options_from(config), checkpoint, dist=dist, bar=bar)
            scores = torch.zeros(L, H, dtype=torch.float64)
            for (l, h), value in values.items():
                scores[l, h] = value
        timings["scores_s"] = time.perf_counter() - t0
        if config.sahara_steps:
            t0 = time.perf_counter()
            scorer = functools.partial(exact_scores, dist=dist, bar=bar)
            options = get_score(SAHARA_SCORE).options_from(config)
            extras["sahara"] = sahara_search(engine, config.sahara_steps, options, checkpoint, scorer)
            timings["sahara_s"] = time.perf_counter() - t0
    return HeadScores(
        scores=scores, config=config, num_kv_heads=arch.num_kv_heads, n_prompts=len(samples), model=loaded.source, exact=exact,
        extras=extras, timings=timings,
    )
