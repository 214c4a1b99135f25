"""How well the approximate engine's estimates rank the exact top-10 heads, on a chosen prompt set.

    .venv/bin/python benchmarks/approx_estimates.py --data builtin:advbench_val   # the validation prompts
    .venv/bin/python benchmarks/approx_estimates.py --data builtin:harmbench

Scores every head of SmolLM2-135M-Instruct exactly (fast engine) on 8 seeded prompts of ``--data``,
then prints, for the gradient (hidden-Fisher) estimate of rank 1 and 2, alone and refined by the
last-position ablation of its top 40 / 60 / 80 candidates: the estimate ranks of the exact top-10
heads, how many heads must be rescored for 9 and for 10 of them (recall 0.9 / 1.0 at a fixed budget),
and the CPU seconds of the estimate (``--threads 1``). This is what the approximate engine's defaults
were chosen on; report timings and recall with ``benchmarks/heads.py`` on other prompts.
"""

from __future__ import annotations

import argparse
import time

import torch
from tqdm import tqdm

from hsr.data import encode, load_samples
from hsr.heads import HeadScoreConfig
from hsr.heads.approx import ships_proxy_hidden
from hsr.heads.attribution import _engine
from hsr.heads.last_position import refine_last_position
from hsr.loading import load_model


def _ranks(exact: torch.Tensor, estimate: torch.Tensor, k: int = 10) -> list[int]:
    """1-based estimate ranks of the exact top-``k`` heads (ties broken by index, as the engine does)."""
    n = exact.numel()
    order = sorted(range(n), key=lambda i: (-float(estimate.reshape(-1)[i]), i))
    pos = {c: r for r, c in enumerate(order)}
    top = sorted(range(n), key=lambda i: (-float(exact.reshape(-1)[i]), i))[:k]
    return sorted(pos[c] + 1 for c in top)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="builtin:advbench_val")
    p.add_argument("--prompts", type=int, default=8)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    loaded = load_model("default")
    samples = load_samples(args.data, limit=args.prompts, seed=0)
    cfg = HeadScoreConfig(engine="approx", max_batch_tokens=1024)
    encoded = [encode(loaded.processor, s, include_response=False, max_length=cfg.max_length) for s in samples]
    engine = _engine(loaded, encoded, cfg, tqdm(disable=True))
    engine.prepare()
    L, H = engine.arch.num_layers, engine.arch.num_heads
    exact = torch.zeros(L, H, dtype=torch.float64)
    for layer, data in engine.run({layer: list(range(H)) for layer in range(L)}):
        exact[layer] = data["kl"].mean(1)
    top = sorted(range(L * H), key=lambda i: -float(exact.reshape(-1)[i]))[:10]
    print(f"{args.data}, {len(samples)} prompts; exact top-10 heads (layer, head): {sorted(divmod(i, H) for i in top)}")
    for rank in (1, 2):
        kv: dict = {}
        t0 = time.process_time()
        proxy = ships_proxy_hidden(engine, rank, keep_kv=kv)
        t_grad = time.process_time() - t0
        r = _ranks(exact, proxy)
        print(f"rank {rank}, gradient alone ({t_grad:5.2f} CPU s): ranks {r}; rescore {r[8]} for 9 of 10, {r[9]} for all")
        for refine in (40, 60, 80):
            t0 = time.process_time()
            refined = refine_last_position(engine, proxy, refine, kv=kv)
            t_ref = time.process_time() - t0
            r = _ranks(exact, refined)
            print(f"   + refine {refine} (+{t_ref:4.2f} CPU s): ranks {r}; rescore {r[8]} for 9 of 10, {r[9]} for all")


if __name__ == "__main__":
    main()
