"""Realignment variants on the VALIDATION split, to choose (or rule out) settings without touching the test split.

Run `hsr sweep scripts/validation.yaml --sparsities 0.4,0.5,0.6` first; then
    python scripts/validate_realign.py --run hsr-out/validation --point wanda-0.5
restores the point's pruned model with each variant below (Ships heads of the sweep's dense model) and
evaluates it on builtin:advbench_val / builtin:benign_val with the refusal judge. "oracle-aligned-layers"
restores every pruned attention weight of the layers the align stage trained: an upper bound on what
attention-only restoration can give back in this testbed. Prints one row per variant.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from hsr.evaluation import EvalConfig, evaluate_model
from hsr.evaluation.metrics import wilson_interval
from hsr.evaluation.paired import mcnemar_exact
from hsr.loading import load_model
from hsr.heads import read_heads
from hsr.realign import RealignConfig, load_importance, load_pruned_masks, realign_pruned

VARIANTS: dict[str, dict] = {
    "pruned (nothing restored)": {"top_h": 1, "q": 1e-9, "p": 0.0, "max_p": 1e-9},
    "HSR top-10 (paper defaults)": {"top_h": 10},
    "HSR top-30": {"top_h": 30},
    "HSR top-10, per-row": {"top_h": 10, "per_row": True},
    "HSR top-30, q=0.8 p=0.3 max_p=0.9": {"top_h": 30, "q": 0.8, "p": 0.3, "max_p": 0.9},
    "HSR-a top-30 (whole heads)": {"top_h": 30, "whole_head": True},
    "random heads top-10 (control)": {"top_h": 10, "random_heads": True},
    "random heads top-10, per-row (control)": {"top_h": 10, "random_heads": True, "per_row": True},
    "oracle-aligned-layers (whole heads)": {"oracle": True, "whole_head": True},
}


def _rate(k: int, n: int) -> str:
    lo, hi = wilson_interval(k, n)
    return f"{100 * k / n:.0f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", required=True, help="the validation sweep's run directory")
    ap.add_argument("--point", default="wanda-0.5", help="sweep point folder")
    ap.add_argument("--out", default=None, help="where evaluations go (default RUN/validation-variants)")
    ap.add_argument("--heads", default=None, help="a heads.json to rank heads by (default RUN/heads)")
    ap.add_argument("--variants", default=None, help="semicolon-separated subset of the variant names to run")
    args = ap.parse_args()
    run = Path(args.run)
    dense_dir = run / "aligned"
    align = json.loads((dense_dir / "summary.json").read_text())
    ranking = read_heads(args.heads or run / "heads").ranking
    util = load_importance(run / "importance" / "utility.safetensors")
    safe = load_importance(run / "importance" / "safety.safetensors")
    dense = load_model(str(dense_dir))
    num_layers, num_heads = dense.arch.num_layers, dense.arch.num_heads
    trained = align["config"]["train_layers"] or num_layers
    oracle = [(l, h) for l in range(num_layers - trained, num_layers) for h in range(num_heads)]
    ec = EvalConfig(harmful="builtin:advbench_val", benign="builtin:benign_val", limit=None, max_new_tokens=32,
                    batch_size=64, judge="refusal", mcq=None, max_length=256)
    out_root = Path(args.out) if args.out else run / "validation-variants"
    print("| variant | restored per 10k | complied (ASR) [95% CI] | refusal | degenerate | benign refused | perplexity | McNemar p vs pruned |")
    print("|---|---|---|---|---|---|---|---|")
    baseline: list[bool] | None = None
    chosen = [v.strip() for v in args.variants.split(";")] if args.variants else list(VARIANTS)
    for name in chosen:
        spec = dict(VARIANTS[name])
        heads = ranking
        if spec.pop("oracle", False):
            heads, spec["top_h"] = oracle, len(oracle)
        pruned = load_model(str(run / args.point / "pruned"))
        masks = load_pruned_masks(run / args.point / "pruned", dense.model, pruned.model)
        start = time.perf_counter()
        result = realign_pruned(dense, pruned, masks, heads, util, safe, RealignConfig(**spec))
        slug = "".join(c if c.isalnum() else "-" for c in name)
        m = evaluate_model(pruned, ec, out_root / slug, label=slug, progress=False)
        harm = [json.loads(l) for l in (out_root / slug / "generations_harmful.jsonl").read_text().splitlines()]
        verdicts = [r.get("verdict") for r in harm]
        n = len(verdicts)
        success = [v == "complied" for v in verdicts]
        if name.startswith("pruned"):
            baseline = success
        p = f"{mcnemar_exact(baseline, success)['p_value']:.2g}" if baseline is not None and baseline is not success else "-"
        print(f"| {name} | {1e4 * result.summary['restored_fraction']:.2f} | {_rate(verdicts.count('complied'), n)} | "
              f"{verdicts.count('refusal')} | {verdicts.count('degenerate')} | {m['over_refusal']['k']}/{m['over_refusal']['n']} | "
              f"{m['perplexity']:.2f} | {p} |", flush=True)
        del pruned, masks, result
        _ = start


if __name__ == "__main__":
    main()
