#!/usr/bin/env bash
# The validation sweep on the real aligned model (issue 20): which method and sparsity raise compliance while
# degenerate + non-answer stays under 20%? Dense and pruned only (realigned and control are built, not
# evaluated) on all of builtin:advbench_val (100) and builtin:benign_val (80), 64 new tokens: Wanda 0.45, 0.5,
# 0.55 and 2:4, then SparseGPT 0.5 in the same folder (heads, importance and the dense evaluation are shared).
# About an hour on 2 CPU cores; each point is cached, so an interrupted run resumes.
# Research testbed only: never a dependency of the package, the default run or CI.
# Usage: bash scripts/real_model_sweep.sh QWEN_GGUF [OUT]   (QWEN_GGUF from ../shared/models/fetch_qwen25coder05b.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1
out=${2:-hsr-out/qwen-sweep}
H=.venv/bin/hsr
common=(scripts/real_model.yaml --model "$model" --out "$out" --no-progress
  --set evaluate.benign=builtin:benign_val --set evaluate.limit=none --set 'evaluate.models=[dense,pruned]')
$H sweep "${common[@]}" --sparsities 0.45,0.5,0.55,2:4
$H sweep "${common[@]}" --methods sparsegpt --sparsities 0.5
