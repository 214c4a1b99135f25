#!/usr/bin/env bash
# The validation sweep the default run's settings were chosen on (issue 17), then re-judged with the rubric
# judge: Wanda 0.3-0.6 in steps of 0.05 and 2:4 / 4:8, SparseGPT 0.4 / 0.5, attention-only Wanda 0.5-0.7,
# dense and pruned (plus the untuned base model) on builtin:advbench_val / builtin:benign_val, 64 new tokens.
# Several hours on 2 CPU cores; each sweep folder is cached, so an interrupted run resumes.
# Usage: bash scripts/validation_sweep.sh [OUT_ROOT]   (default hsr-out/validation-sweep)
set -euo pipefail
cd "$(dirname "$0")/.."
root=${1:-hsr-out/validation-sweep}
H=.venv/bin/hsr
common=(--set evaluate.max_new_tokens=64 --no-progress)
$H sweep scripts/validation.yaml --out "$root/wanda" --sparsities 0.3,0.35,0.4,0.45,0.5,0.55,0.6,2:4,4:8 \
  --set 'evaluate.models=[base,dense,pruned]' "${common[@]}"
# SparseGPT in the same folder (align, heads, importance and the dense evaluation are shared)
$H sweep scripts/validation.yaml --out "$root/wanda" --methods sparsegpt --sparsities 0.4,0.5 \
  --set 'evaluate.models=[dense,pruned]' "${common[@]}"
# attention-only Wanda: its own folder (prune.include_mlp differs); only the pruned models are evaluated, the
# dense reference is the same aligned model evaluated in $root/wanda/eval/dense
$H sweep scripts/validation.yaml --model "$root/wanda/aligned" --out "$root/attention" --sparsities 0.5,0.6,0.7 \
  --set prune.include_mlp=false --set 'evaluate.models=[pruned]' "${common[@]}"
for s in wanda attention; do
  $H judge "$root/$s" --judge rubric --out "$root/$s-rubric" --overwrite
done
