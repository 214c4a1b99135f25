"""Peak memory of prune + heads + importance + realign with and without disk offload.

    .venv/bin/python benchmarks/memory.py                        # SmolLM2-135M-Instruct (fp32), CPU
    .venv/bin/python benchmarks/memory.py --device cuda:0        # also peak GPU memory
    .venv/bin/python benchmarks/memory.py --device cuda:0 --json out.json   # and every number as JSON

Each stage of each run goes into its own process, so every peak is that stage's alone. The capped
run loads with ``--max-memory`` set to a quarter of the fp32 model (on the execution device;
``--device cpu``: the CPU budget) and ``--offload-folder`` for the rest; the uncapped run loads the
whole model. Printed per stage: peak RSS (and peak GPU memory), the RSS of the interpreter with
torch, transformers and the model's modeling code imported (the floor no model setting can lower),
the ratio, the slowdown.
Then the masks, the pruned weights, the heads.json scores, the importance scores and the
realigned weights of the two runs are compared and must be identical bit for bit.

Only the CPU can be measured on the machine these notes were written on; the GPU columns appear
when ``--device`` is a CUDA device.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

STAGES = ("prune", "heads", "importance", "realign")
MB = 2**20


def _rss_now(field: str = "VmRSS") -> int:
    """Current resident set size in bytes (Linux): all of it, or ``RssAnon`` (heap) / ``RssFile`` (mapped files)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    return 0


class _Sampler(threading.Thread):
    """Peak anonymous (heap) RSS, sampled every 20 ms: unlike pages of memory-mapped checkpoint files,
    which the kernel can drop at any time, this is memory the process really holds."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.peak_anon = _rss_now("RssAnon")
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.02):
            self.peak_anon = max(self.peak_anon, _rss_now("RssAnon"))


# ---------------------------------------------------------------------------- one stage (child process)
def _load(work: Path, source: str | Path, args: argparse.Namespace, share: int = 1):
    from hsr.loading import load_model

    kw = {}
    if args.mode == "capped":  # realign holds two models, which split the budget (as `hsr realign` does)
        kw = {"max_memory": args.budget_spec, "offload_folder": str(work / "offload"), "share": share}
    return load_model(str(source), device=args.device, **kw)


def _import_model_code() -> int:
    """Import the default model's modeling code (``transformers.modeling_utils`` and the model's module),
    which every stage imports before its first weight loads; return the heap it took (about 90 MiB):
    a fixed cost like torch's, so it belongs to the floor, not to the stage."""
    from transformers import AutoConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    from hsr.loading import default_model_dir

    before = _rss_now("RssAnon")
    MODEL_FOR_CAUSAL_LM_MAPPING[type(AutoConfig.from_pretrained(default_model_dir()))]  # imports the module
    return _rss_now("RssAnon") - before


def _stage(args: argparse.Namespace) -> None:
    """Run one stage, write its outputs under ``work/mode`` and its measurements to ``stage.json``."""
    import torch

    from hsr.data import load_samples
    from hsr.heads import HeadScoreConfig, read_heads, save_head_scores, score_heads
    from hsr.loading import default_model_dir
    from hsr.pruning import PruneConfig, prune_model, save_pruned
    from hsr.realign import (RealignConfig, compute_importance, load_importance, load_pruned_masks, realign_pruned,
                             save_importance, save_realigned)

    work = Path(args.work) / args.mode
    dense_dir = default_model_dir()
    code_anon = _import_model_code()
    floor, floor_anon = _rss_now(), _rss_now("RssAnon")
    sampler = _Sampler()
    sampler.start()
    start = time.perf_counter()
    if args.stage == "prune":
        loaded = _load(work, dense_dir, args)
        samples = load_samples("builtin:utility", limit=args.samples, seed=0)
        result = prune_model(loaded, samples, PruneConfig(max_length=args.max_length), progress=False)
        save_pruned(work / "pruned", loaded, result, overwrite=True)
    elif args.stage == "heads":
        loaded = _load(work, dense_dir, args)
        samples = load_samples("builtin:safety", limit=args.prompts, seed=0)
        cfg = HeadScoreConfig(score="gships", max_length=args.max_length)
        save_head_scores(work / "heads", score_heads(loaded, samples, cfg, progress=False), model_label="dense")
    elif args.stage == "importance":
        loaded = _load(work, dense_dir, args)
        (work / "importance").mkdir(parents=True, exist_ok=True)
        for kind in ("utility", "safety"):
            samples = load_samples(f"builtin:{kind}", limit=args.samples, seed=0)
            target = work / "importance" / f"{kind}.safetensors"
            stream = target if args.mode == "capped" else None  # as `hsr run` with placement: layer by layer
            scores = compute_importance(loaded, samples, max_length=args.max_length, progress=False, out=stream)
            if stream is None:
                save_importance(scores, target)
            del scores
    else:
        dense, pruned = _load(work, dense_dir, args, 2), _load(work, work / "pruned", args, 2)
        masks = load_pruned_masks(work / "pruned", dense.model, pruned.model)
        ranking = read_heads(work / "heads").ranking
        lazy = args.mode == "capped"  # as `hsr realign` with placement options: score tensors read when used
        utility = load_importance(work / "importance" / "utility.safetensors", lazy=lazy)
        safety = load_importance(work / "importance" / "safety.safetensors", lazy=lazy)
        result = realign_pruned(dense, pruned, masks, ranking, utility, safety, RealignConfig())
        save_realigned(work / "realigned", pruned, result, overwrite=True)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    gpu = torch.cuda.max_memory_allocated() if torch.cuda.is_available() and args.device.startswith("cuda") else None
    sampler.stop.set()
    sampler.join()
    (work / f"{args.stage}.json").write_text(json.dumps({
        "peak_rss": peak, "floor_rss": floor, "seconds": seconds, "peak_gpu": gpu,
        "peak_anon": max(sampler.peak_anon, _rss_now("RssAnon")), "floor_anon": floor_anon,
        "code_anon": code_anon}))


# ---------------------------------------------------------------------------- driver
def _model_facts() -> tuple[int, int, int]:
    """(fp32 model bytes, one decoder layer's bytes, number of layers) of the default model."""
    from safetensors import safe_open

    from hsr.loading import default_model_dir

    total, layer0, layers = 0, 0, set()
    with safe_open(str(default_model_dir() / "model.safetensors"), framework="pt") as fh:
        for key in fh.keys():
            shape = fh.get_slice(key).get_shape()
            n = 4
            for d in shape:
                n *= d
            total += n
            if ".layers." in key:
                layers.add(int(key.split(".layers.")[1].split(".")[0]))
                layer0 += n if ".layers.0." in key else 0
    return total, layer0, len(layers)


def _run(stage: str, mode: str, args: argparse.Namespace, budget_spec: str) -> dict:
    cmd = [sys.executable, __file__, "--child", "--stage", stage, "--mode", mode, "--work", args.work,
           "--device", args.device, "--budget-spec", budget_spec, "--samples", str(args.samples),
           "--prompts", str(args.prompts), "--max-length", str(args.max_length)]
    subprocess.run(cmd, check=True, env={**os.environ, "TQDM_DISABLE": "1"})
    return json.loads((Path(args.work) / mode / f"{stage}.json").read_text())


def _weights(folder: Path) -> dict:
    """Every tensor of a saved checkpoint (an offloaded model is saved in shards of about one layer)."""
    from safetensors.torch import load_file

    out: dict = {}
    for f in sorted(folder.glob("model*.safetensors")):
        out.update(load_file(str(f)))
    return out


def _compare(work: Path) -> list[str]:
    """Differences between the uncapped and capped runs' outputs (empty when bit-identical)."""
    import torch
    from safetensors.torch import load_file

    from hsr.io import load_masks

    a, b = work / "uncapped", work / "capped"
    problems = []

    def same(x: dict, y: dict, what: str) -> None:
        if x.keys() != y.keys() or any(not torch.equal(x[k], y[k]) for k in x):
            problems.append(what)

    for folder in ("pruned", "realigned"):
        same(load_masks(a / folder / "mask.safetensors"), load_masks(b / folder / "mask.safetensors"), f"{folder} masks")
        same(_weights(a / folder), _weights(b / folder), f"{folder} weights")
    same(load_masks(a / "realigned" / "restored.safetensors"), load_masks(b / "realigned" / "restored.safetensors"),
         "restored positions")
    for kind in ("utility", "safety"):
        same(load_file(str(a / "importance" / f"{kind}.safetensors")),
             load_file(str(b / "importance" / f"{kind}.safetensors")), f"{kind} importance")
    ha, hb = (json.loads((d / "heads" / "heads.json").read_text())["heads"] for d in (a, b))
    if ha != hb:
        problems.append("heads.json scores")
    return problems


def _report(results: dict, budget: int, model_bytes: int, layer_bytes: int, n_layers: int, device: str) -> None:
    print(f"SmolLM2-135M-Instruct fp32: {model_bytes / MB:.0f} MiB, {n_layers} decoder layers of "
          f"{layer_bytes / MB:.1f} MiB; capped run: --max-memory {'cpu' if device == 'cpu' else device}"
          f"={budget / MB:.0f} MiB (a quarter) + --offload-folder; realign splits it between its two models")
    gpu = any(r["peak_gpu"] is not None for r in results.values())
    print(f"{'':<11}{'peak RSS (MiB)':>27}{'heap above floor (MiB)':>30}{'time (s)':>22}")
    print(f"{'stage':<11}{'floor':>7}{'uncapped':>10}{'capped':>8}{'ratio':>7}{'uncapped':>10}{'capped':>8}"
          f"{'ratio':>7}{'uncapped':>10}{'capped':>8}{'slowdown':>9}" + (f"{'GPU MiB u/c':>14}" if gpu else ""))
    for stage in STAGES:
        u, c = results[(stage, "uncapped")], results[(stage, "capped")]
        hu, hc = (r["peak_anon"] - r["floor_anon"] for r in (u, c))
        line = (f"{stage:<11}{c['floor_rss'] / MB:>7.0f}{u['peak_rss'] / MB:>10.0f}{c['peak_rss'] / MB:>8.0f}"
                f"{c['peak_rss'] / u['peak_rss']:>7.2f}{hu / MB:>10.0f}{hc / MB:>8.0f}{hc / hu:>7.2f}"
                f"{u['seconds']:>10.1f}{c['seconds']:>8.1f}{c['seconds'] / u['seconds']:>8.2f}x")
        if gpu:
            line += f"{u['peak_gpu'] / MB:>8.0f}/{c['peak_gpu'] / MB:<6.0f}"
        print(line)
    code = max(r.get("code_anon", 0) for r in results.values())
    print("peak RSS: getrusage maxrss, incl. pages of memory-mapped checkpoint files; floor: RSS with torch, "
          f"transformers and the model's modeling code imported (that code alone: {code / MB:.0f} MiB of heap), "
          "before any model loads; heap: peak anonymous RSS (sampled every 20 ms) minus "
          "the floor's. Goal for the capped heap: budget + one layer + activations = "
          f"{(budget + layer_bytes) / MB:.0f} MiB + activations.")


def _write_json(path: Path, results: dict, budget: int, model_bytes: int, device: str, problems: list[str]) -> None:
    """Per stage: both runs' numbers and the capped/uncapped ratios (peak GPU memory on CUDA)."""
    def ratio(a: float | None, b: float | None) -> float | None:
        return None if a is None or not b else round(a / b, 4)

    stages = {}
    for stage in STAGES:
        u, c = results[(stage, "uncapped")], results[(stage, "capped")]
        stages[stage] = {"uncapped": u, "capped": c, "rss_ratio": ratio(c["peak_rss"], u["peak_rss"]),
                         "gpu_ratio": ratio(c["peak_gpu"], u["peak_gpu"]), "slowdown": ratio(c["seconds"], u["seconds"])}
    path.write_text(json.dumps({"device": device, "budget_bytes": budget, "model_bytes": model_bytes,
                                "identical": not problems, "problems": problems, "stages": stages}, indent=2))


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--samples", type=int, default=8, help="calibration / importance samples")
    p.add_argument("--prompts", type=int, default=2, help="harmful prompts for head scores")
    p.add_argument("--max-length", type=int, default=128)
    p.add_argument("--work", default=None, help="keep outputs here (default: a temporary folder)")
    p.add_argument("--json", default=None, help="also write the per-stage peaks, ratios and the identity check here")
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)
    p.add_argument("--mode", choices=("capped", "uncapped"), help=argparse.SUPPRESS)
    p.add_argument("--budget-spec", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        _stage(args)
        return 0
    keep = args.work is not None
    args.work = args.work or tempfile.mkdtemp(prefix="hsr-memory-")
    model_bytes, layer_bytes, n_layers = _model_facts()
    budget = model_bytes // 4
    key = "cpu" if args.device == "cpu" else str(args.device).split(":")[-1]
    spec = f"{key}={budget}"
    results = {}
    try:
        for mode in ("uncapped", "capped"):
            for stage in STAGES:
                results[(stage, mode)] = _run(stage, mode, args, spec)
        _report(results, budget, model_bytes, layer_bytes, n_layers, args.device)
        problems = _compare(Path(args.work))
    finally:
        if not keep:
            shutil.rmtree(args.work, ignore_errors=True)
    print("identical (masks, pruned and realigned weights, restored positions, importance, heads.json scores): "
          + ("yes" if not problems else "NO: " + ", ".join(problems)))
    if args.json:
        _write_json(Path(args.json), results, budget, model_bytes, args.device, problems)
    assert not problems, problems
    return 0


if __name__ == "__main__":
    sys.exit(main())
