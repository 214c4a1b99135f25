"""hsr's SparseGPT against llm-compressor's, one linear at a time, on the same weights and inputs.

    OMP_NUM_THREADS=1 PYTHONPATH=/tmp/llmc/site .venv/bin/python benchmarks/sparsegpt_reference.py \
        --layers 0 15 29 --linears self_attn.q_proj self_attn.o_proj mlp.down_proj
    ... --layers --reference-model /tmp/llmc-sgpt     # whole model, llm-compressor's math in hsr's walk

The reference is llm-compressor's own ``sparsify_weight`` and ``accumulate_hessian``
(``llmcompressor/modifiers/pruning/sparsegpt/sgpt_sparsify.py``). Importing the llmcompressor package
pulls in compressed-tensors and more, so when the package import fails that one file is loaded by
path; it needs only torch, transformers and loguru. Install it without its dependencies, e.g.

    pip install --no-deps --target /tmp/llmc/site llmcompressor loguru

Inputs: the embedded SmolLM2-135M-Instruct, hsr's calibration set (``builtin:utility``, the same
seeded subset and chat encoding as ``hsr prune``) and the held-out perplexity text cut into windows
of ``--max-length`` tokens. Every selected layer gets the DENSE model's hidden states (the per-layer
comparison needs identical inputs for every method, not the sequential pipeline's).

Per linear it prints: the relative output error ||X (W - W')^T|| / ||X W^T|| on the calibration
tokens and on the held-out tokens for hsr's SparseGPT, llm-compressor's SparseGPT (on its own fp32
Hessian), Wanda and magnitude; the agreement of hsr's and llm-compressor's masks; the relative
difference of their pruned weights; and how far apart the two Hessians are (after llm-compressor's
per-sequence scale is converted to hsr's per-token one).

With ``--reference-model OUT`` it also prunes the whole model through hsr's own layer walk
(:func:`hsr.pruning.prune.prune_model`, same data and settings as ``hsr prune --method sparsegpt``)
with llm-compressor's ``sparsify_weight`` in place of hsr's, and saves it to OUT for
``hsr evaluate``: the end-to-end counterpart of the per-linear table.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch

from hsr.calibration import HessianAccumulator, InputNormAccumulator, capture_inputs, linear_input_hooks, run_layer
from hsr.data import Encoded, encode, load_samples
from hsr.evaluation.perplexity import load_text, token_ids
from hsr.loading import load_model
from hsr.pruning import methods as hsr_methods
from hsr.pruning.masks import Sparsity
from hsr.pruning.methods import PruningMethod, prune_by_scores, sparsegpt_prune, wanda_scores
from hsr.pruning.prune import PruneConfig, prune_model, save_pruned

REFERENCE_MODULE = "llmcompressor.modifiers.pruning.sparsegpt.sgpt_sparsify"
REFERENCE_FILE = "modifiers/pruning/sparsegpt/sgpt_sparsify.py"


def load_reference() -> Any:
    """llm-compressor's sgpt_sparsify module: by import if the package imports, else the file by path."""
    try:
        return importlib.import_module(REFERENCE_MODULE)
    except ImportError as exc:
        spec = importlib.util.find_spec("llmcompressor")  # finds the package without running its __init__
        if spec is None or not spec.submodule_search_locations:
            sys.exit(f"llmcompressor not found ({exc}); pip install --no-deps --target DIR llmcompressor loguru "
                     "and put DIR on PYTHONPATH.")
        path = Path(list(spec.submodule_search_locations)[0]) / REFERENCE_FILE
        file_spec = importlib.util.spec_from_file_location("sgpt_sparsify", path)
        module = importlib.util.module_from_spec(file_spec)
        file_spec.loader.exec_module(module)
        return module


def reference_sparsify(ref: Any, weight: torch.Tensor, hessian: torch.Tensor, sparsity: Sparsity,
                       block_size: int, percdamp: float) -> tuple[torch.Tensor, torch.Tensor]:
    """llm-compressor's ``sparsify_weight`` on one weight and Hessian (its fp32); (new weight, mask)."""
    module = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=False, dtype=weight.dtype)
    module.weight.data.copy_(weight)
    H = hessian.to(ref.SGPT_PRECISION).clone()
    _, new = ref.sparsify_weight(module, {module: H}, sparsity.ratio, sparsity.n, sparsity.m, block_size, percdamp, False)
    return new.to(weight.dtype), new == 0


def prune_with_reference(ref: Any, args: argparse.Namespace, sparsity: Sparsity) -> None:
    """The whole model through hsr's prune_model, with llm-compressor's sparsify_weight per linear."""

    def prune(weight: torch.Tensor, stats: HessianAccumulator, name: str, config: PruneConfig) -> tuple[torch.Tensor, torch.Tensor]:
        return reference_sparsify(ref, weight, stats.h[name], config.sparsity, config.block_size, config.percdamp)

    hsr_methods._REGISTRY["sparsegpt"] = PruningMethod("sparsegpt", prune, HessianAccumulator)
    loaded = load_model(args.model)
    samples = load_samples(args.data, limit=args.n_samples, seed=args.seed)
    config = PruneConfig(method="sparsegpt", sparsity=sparsity, max_length=args.max_length, seed=args.seed,
                         block_size=args.block_size, percdamp=args.percdamp)
    result = prune_model(loaded, samples, config, progress=False)
    print(f"llm-compressor SparseGPT through hsr's walk: saved to {save_pruned(args.reference_model, loaded, result, overwrite=True)}")


def exact_count_check(ref: Any, weight: torch.Tensor, hessian: torch.Tensor, sparsity: Sparsity, block_size: int,
                      percdamp: float) -> tuple[float, float] | None:
    """hsr vs llm-compressor with the two known differences removed: (mask agreement, max |dW| / max |W|).

    llm-compressor keeps every weight ``<=`` the k-th smallest score of a block, k = int(ratio * numel):
    one weight more per block than hsr's exact floor(ratio * numel), and it works in float32. Here it runs
    in float64 with the ratio that makes it prune exactly hsr's count. That needs blocks of one width, so
    the block size is lowered to a divisor of the input width when needed (both methods use it).
    None for N:M, or when no block size of 16 or more divides the width.
    """
    cols = weight.shape[1]
    if sparsity.is_nm:
        return None
    block = next((b for b in (block_size, 128, 64, 32, 16) if b <= block_size and cols % b == 0), None)
    if block is None:
        return None
    numel = weight.shape[0] * block
    k = int(numel * sparsity.ratio + 1e-9)
    saved = ref.SGPT_PRECISION
    ref.SGPT_PRECISION = torch.float64
    try:
        w_ref, m_ref = reference_sparsify(ref, weight.double(), hessian, Sparsity(ratio=(k - 0.5) / numel), block, percdamp)
    finally:
        ref.SGPT_PRECISION = saved
    w_hsr, m_hsr = sparsegpt_prune(weight.double(), hessian, sparsity, block_size=block, percdamp=percdamp)
    return float((m_hsr == m_ref).float().mean()), float((w_hsr - w_ref).abs().max() / weight.abs().max())


def heldout_encoded(loaded: Any, max_length: int) -> list[Encoded]:
    """The held-out perplexity text as consecutive windows of ``max_length`` tokens."""
    ids = token_ids(loaded, load_text("builtin:heldout"))
    out = []
    for start in range(0, ids.numel(), max_length):
        window = ids[start : start + max_length].unsqueeze(0)
        if window.shape[1] >= 2:
            inputs = {"input_ids": window, "attention_mask": torch.ones_like(window)}
            out.append(Encoded(inputs, torch.zeros_like(window, dtype=torch.bool), 0, None))
    return out


def linear_inputs(layer: torch.nn.Module, inputs: Sequence[Any], linears: dict[str, torch.nn.Linear]) -> dict[str, list[torch.Tensor]]:
    """Per linear, one [tokens, in] tensor per sample: the rows hsr's calibration hooks see."""
    rows: dict[str, list[torch.Tensor]] = {name: [] for name in linears}
    current: dict[str, Any] = {"mask": None}
    with linear_input_hooks(linears, lambda name, x: rows[name].append(x.detach().clone()), lambda: current["mask"]):
        for x in inputs:
            current["mask"] = x.token_mask
            layer(x.hidden, **x.kwargs)
    return rows


def output_error(weight: torch.Tensor, pruned: torch.Tensor, xs: Sequence[torch.Tensor]) -> float:
    """||X (W - W')^T||_F / ||X W^T||_F over all rows of ``xs``."""
    w, d = weight.double(), (weight.double() - pruned.double())
    num = den = 0.0
    for x in xs:
        x = x.double()
        num += float((x @ d.T).square().sum())
        den += float((x @ w.T).square().sum())
    return (num / den) ** 0.5


@dataclass
class Row:
    name: str
    tokens: int
    errors: dict[str, tuple[float, float]]  # method -> (calibration error, held-out error)
    mask_agree: float
    mask_jaccard: float
    weight_diff: float
    hessian_diff: float
    exact: tuple[float, float] | None  # exact_count_check


def compare_linear(ref: Any, name: str, linear: torch.nn.Linear, calib: list[torch.Tensor], held: list[torch.Tensor],
                   sparsity: Sparsity, block_size: int, percdamp: float) -> Row:
    """Every method on one linear with the same weight and inputs."""
    W = linear.weight.data.clone()
    acc, norms = HessianAccumulator(), InputNormAccumulator()
    H_ref = ref.make_empty_hessian(linear, device=W.device)
    n_ref = 0
    for x in calib:
        acc(name, x)
        norms(name, x)
        H_ref, n_ref = ref.accumulate_hessian(x.unsqueeze(0), linear, H_ref, n_ref)
    tokens = acc.n[name]
    H_hsr = acc.h[name]
    # llm-compressor divides by the number of sequences, hsr by the number of tokens: same matrix up to scale.
    H_ref_as_hsr = H_ref.double() * (n_ref / tokens)
    hessian_diff = float((H_ref_as_hsr - H_hsr).norm() / H_hsr.norm())

    pruned = {
        "hsr-sparsegpt": sparsegpt_prune(W, H_hsr, sparsity, block_size=block_size, percdamp=percdamp),
        "llmc-sparsegpt": reference_sparsify(ref, W, H_ref, sparsity, block_size, percdamp),
        "wanda": prune_by_scores(W, wanda_scores(W, norms.norms(name)), sparsity),
        "magnitude": prune_by_scores(W, W.abs(), sparsity),
    }
    results = {k: w for k, (w, _) in pruned.items()}
    masks = {k: m for k, (_, m) in pruned.items()}
    errors = {k: (output_error(W, v, calib), output_error(W, v, held)) for k, v in results.items()}
    a, b = masks["hsr-sparsegpt"], masks["llmc-sparsegpt"]
    agree = float((a == b).float().mean())
    jaccard = float((a & b).sum() / (a | b).sum())
    weight_diff = float((results["hsr-sparsegpt"].double() - results["llmc-sparsegpt"].double()).norm() / W.double().norm())
    exact = exact_count_check(ref, W, H_hsr, sparsity, block_size, percdamp)
    return Row(name, tokens, errors, agree, jaccard, weight_diff, hessian_diff, exact)


def print_rows(rows: list[Row]) -> None:
    methods = list(rows[0].errors)
    head = f"{'linear':<26}{'tok':>6}  " + "  ".join(f"{m:>15}" for m in methods)
    print("relative output error ||X(W-W')^T||/||XW^T||, calibration tokens | held-out tokens")
    print(head + f"  {'mask=':>6} {'jacc':>6} {'dW':>8} {'dH':>8} {'x-mask=':>8} {'x-dW':>8}")
    for r in rows:
        cells = "  ".join(f"{c:6.4f}|{h:6.4f}".rjust(15) for c, h in (r.errors[m] for m in methods))
        exact = f"{r.exact[0]:8.6f} {r.exact[1]:8.1e}" if r.exact else f"{'n/a':>8} {'n/a':>8}"
        print(f"{r.name:<26}{r.tokens:>6}  {cells}  {r.mask_agree:6.4f} {r.mask_jaccard:6.4f} "
              f"{r.weight_diff:8.2e} {r.hessian_diff:8.2e} {exact}")
    for m in methods:
        c = sum(r.errors[m][0] for r in rows) / len(rows)
        h = sum(r.errors[m][1] for r in rows) / len(rows)
        print(f"mean {m:<16} calibration {c:.4f}  held-out {h:.4f}")
    print("mask= : share of positions where hsr's and llm-compressor's masks agree; jacc: |A&B|/|A|B|;")
    print("dW: ||W_hsr - W_llmc|| / ||W||; dH: ||H_llmc (rescaled) - H_hsr|| / ||H_hsr||")
    print("x-mask=, x-dW: the same two, max |dW| / max |W|, with llm-compressor in float64 pruning exactly hsr's")
    print("count per block (it keeps one weight more per block as shipped): 1 and 0 when the algorithms agree")


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default")
    p.add_argument("--data", default="builtin:utility")
    p.add_argument("--n-samples", type=int, default=32)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-length", type=int, default=256)
    p.add_argument("--sparsity", default="0.5")
    p.add_argument("--block-size", type=int, default=128)
    p.add_argument("--percdamp", type=float, default=0.01)
    p.add_argument("--layers", type=int, nargs="*", default=[0, 15], help="none: only --reference-model")
    p.add_argument("--linears", nargs="+", default=["self_attn.q_proj", "self_attn.o_proj", "mlp.down_proj"])
    p.add_argument("--reference-model", metavar="OUT", help="also prune the whole model with llm-compressor's "
                   "sparsify_weight inside hsr's layer walk and save it here")
    p.add_argument("--reference-precision", choices=("float32", "float64"), default="float32",
                   help="llm-compressor's working dtype (its SGPT_PRECISION; it ships float32, hsr works in float64)")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    ref = load_reference()
    ref.SGPT_PRECISION = getattr(torch, args.reference_precision)
    sparsity = Sparsity.parse(args.sparsity)
    if args.reference_model:
        prune_with_reference(ref, args, sparsity)
        if not args.layers:
            return 0
    loaded = load_model(args.model)
    samples = load_samples(args.data, limit=args.n_samples, seed=args.seed)
    encoded = [encode(loaded.processor, s, include_response=bool(s.response), max_length=args.max_length) for s in samples]
    calib = capture_inputs(loaded.model, loaded.arch, encoded, response_only=False)
    held = capture_inputs(loaded.model, loaded.arch, heldout_encoded(loaded, args.max_length), response_only=False)
    print(f"model {loaded.source}; calibration {len(calib)} samples, {sum(int(x.token_mask.sum()) for x in calib)} tokens; "
          f"held-out {len(held)} windows, {sum(int(x.token_mask.sum()) for x in held)} tokens; sparsity {sparsity.describe()}")
    arch = loaded.arch
    rows: list[Row] = []
    with torch.no_grad():
        for i in range(max(args.layers) + 1):
            layer = arch.layers[i]
            if i in args.layers:
                linears = {n: layer.get_submodule(n) for n in args.linears}
                xc, xh = linear_inputs(layer, calib, linears), linear_inputs(layer, held, linears)
                for n, lin in linears.items():
                    rows.append(compare_linear(ref, f"{i}.{n}", lin, xc[n], xh[n], sparsity, args.block_size, args.percdamp))
            calib, held = run_layer(layer, calib), run_layer(layer, held)  # dense hidden states for the next layer
    print_rows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
