"""``score_heads``: attribute safety to every attention head on harmful prompts."""

from __future__ import annotations

import hashlib
import logging
import os
import time
from typing import Any, Sequence

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..data import Encoded, Sample, encode
from ..loading import LoadedModel
from ..placement import onloaded
from .approx import gships_proxy, ships_proxy
from .checkpoint import LayerCheckpoint
from .config import HeadScoreConfig
from .engines import EngineBase, FastEngine, Head, HeadPlan, NaiveEngine
from .metrics import subspace_angle_degrees
from .results import HeadScores
from .sahara import sahara_search

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


@torch.no_grad()
def _weight_digest(loaded: LoadedModel) -> float:
    total = 0.0
    for i in range(loaded.arch.num_layers):
        with onloaded(loaded.arch.layers[i]):  # an offloaded layer is read from where accelerate keeps it
            attn = loaded.arch.attention(i)
            total += float(attn.q_proj.weight.double().abs().sum()) + float(attn.o_proj.weight.double().sum())
    return total


def layer_scores(engine: EngineBase, data: dict[str, torch.Tensor], score: str, rank: int) -> torch.Tensor:
    """Scores of the heads of one layer from the engine's raw outputs."""
    if score == "ships":
        return data["kl"].mean(1)
    return torch.tensor([subspace_angle_degrees(engine.base_hidden, h, rank) for h in data["hidden"]], dtype=torch.float64)


def exact_scores(
    engine: EngineBase,
    plan: HeadPlan,
    score: str,
    rank: int,
    checkpoint: LayerCheckpoint | None = None,
    tag: str = "main",
    fixed: Sequence[Head] = (),
) -> dict[Head, float]:
    """Exact scores of the planned heads; layers already in ``checkpoint`` are not recomputed."""
    results: dict[int, dict[str, torch.Tensor]] = {}
    todo: dict[int, list[int]] = {}
    for layer, heads in plan.items():
        heads = list(heads)
        if not heads:
            continue
        saved = checkpoint.load(tag, layer) if checkpoint else None
        if saved is not None and saved["heads"].tolist() == heads:
            results[layer] = saved
            engine.progress(engine.n_prompts)
        else:
            todo[layer] = heads
    for layer, data in engine.run(todo, fixed=fixed):
        data["heads"] = torch.tensor(todo[layer], dtype=torch.long)
        if checkpoint:
            checkpoint.save(tag, layer, data)
        results[layer] = data
    out: dict[Head, float] = {}
    for layer, data in results.items():
        for head, value in zip(data["heads"].tolist(), layer_scores(engine, data, score, rank).tolist()):
            out[(layer, head)] = value
    return out


def _engine(loaded: LoadedModel, encoded: list[Encoded], config: HeadScoreConfig, bar: tqdm) -> EngineBase:
    cls = NaiveEngine if config.engine == "naive" else FastEngine
    return cls(
        loaded,
        encoded,
        mode=config.mode,
        eps=config.effective_eps,
        want_kl=config.score == "ships",
        want_hidden=config.score == "gships" or config.sahara_steps > 0,
        batch_heads=config.batch_heads,
        progress=bar.update,
    )


def _approximate_scores(
    engine: Any, config: HeadScoreConfig, checkpoint: LayerCheckpoint | None, bar: Any, timings: dict[str, float]
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """One-backward proxy for every head, then exact rescoring of the ``approx_top_k`` best by the proxy.

    Returns (scores, exact mask, report): rescored heads carry exact scores, the rest their proxy.
    """
    L, H = engine.arch.num_layers, engine.arch.num_heads
    t0 = time.perf_counter()
    if config.score == "ships":
        proxy = ships_proxy(engine, config.approx_tokens, config.approx_probes, seed=config.seed)
    else:
        proxy = gships_proxy(engine, config.rank, config.approx_directions)
    timings["gradient_s"] = time.perf_counter() - t0
    k = min(config.approx_top_k, L * H)
    chosen = sorted(((l, h) for l in range(L) for h in range(H)), key=lambda c: (-float(proxy[c]), c))[:k]
    plan: dict[int, list[int]] = {}
    for l, h in sorted(chosen):
        plan.setdefault(l, []).append(h)
    t1 = time.perf_counter()
    rescored = exact_scores(engine, plan, config.score, config.rank, checkpoint, tag="rescore")
    bar.update(len(engine.encoded) * (L - len(plan)))
    timings["rescore_s"] = time.perf_counter() - t1
    scores = proxy.clone()
    exact = torch.zeros(L, H, dtype=torch.bool)
    for (l, h), value in rescored.items():
        scores[l, h] = value
        exact[l, h] = True
    report = {
        "proxy": "fisher" if config.score == "ships" else "first-order-subspace",
        "top_k": k,
        "rescored": [[l, h] for l, h in chosen],
        "proxy_scores": proxy.tolist(),
    }
    return scores, exact, report


def score_heads(
    loaded: LoadedModel,
    samples: Sequence[Sample],
    config: HeadScoreConfig,
    checkpoint_dir: str | os.PathLike | None = None,
    progress: bool = True,
) -> HeadScores:
    """Score every query head of ``loaded`` on harmful ``samples`` (prompts; responses are ignored).

    With ``checkpoint_dir``, each finished layer is saved there and a rerun resumes from it.
    """
    config.validate()
    arch = loaded.arch
    L, H = arch.num_layers, arch.num_heads
    config.check_against(len(samples), L, H)
    loaded.model.eval()
    encoded = [encode(loaded.processor, s, include_response=False, max_length=config.max_length) for s in samples]
    checkpoint = None
    if checkpoint_dir is not None:
        key = {
            "hsr": __version__,
            "model": loaded.source,
            "class": arch.class_name,
            "shape": [L, H, arch.num_kv_heads, arch.head_dim],
            "weights": _weight_digest(loaded),
            "prompts": _prompt_digest(encoded),
            "config": config.as_dict(),
        }
        checkpoint = LayerCheckpoint(checkpoint_dir, key)
    N = len(encoded)
    all_heads = {layer: list(range(H)) for layer in range(L)}
    units = N * (1 + L) if config.engine != "approx" else N * 2 + N * L
    units += config.sahara_steps * N * L
    extras: dict[str, Any] = {}
    timings: dict[str, float] = {}
    with tqdm(total=units, desc=f"heads[{config.score} {config.mode} {config.engine}]", disable=not progress, unit=" prompt-layer") as bar:
        t0 = time.perf_counter()
        engine = _engine(loaded, encoded, config, bar)
        engine.prepare()
        bar.update(N)
        timings["prepare_s"] = time.perf_counter() - t0
        exact = torch.ones(L, H, dtype=torch.bool)
        t0 = time.perf_counter()
        if config.engine == "approx":
            scores, exact, extras["approx"] = _approximate_scores(engine, config, checkpoint, bar, timings)
        else:
            values = exact_scores(engine, all_heads, config.score, config.rank, checkpoint)
            scores = torch.zeros(L, H, dtype=torch.float64)
            for (l, h), value in values.items():
                scores[l, h] = value
        timings["scores_s"] = time.perf_counter() - t0
        if config.sahara_steps:
            t0 = time.perf_counter()
            extras["sahara"] = sahara_search(engine, config.sahara_steps, config.rank, checkpoint, exact_scores)
            timings["sahara_s"] = time.perf_counter() - t0
    extras["timings"] = timings
    return HeadScores(
        scores=scores, config=config, num_kv_heads=arch.num_kv_heads, n_prompts=N, model=loaded.source, exact=exact, extras=extras
    )
