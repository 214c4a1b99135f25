#!/usr/bin/env bash
# The validation points scripts/validation_sweep.sh lists but an earlier session did not finish: SparseGPT
# 0.4 / 0.5, Wanda 4:8 and attention-only Wanda 0.6 / 0.7, dense and pruned only (64 new tokens, rubric
# judge), on builtin:advbench_val / builtin:benign_val. Starts from an aligned model (the default run's
# RUN/aligned: the same align settings and inputs as scripts/validation.yaml), so align is skipped; heads,
# importance and realign run on small limits because no realigned model is evaluated here.
# Usage: bash scripts/validation_sweep_extra.sh ALIGNED_MODEL [OUT_ROOT]   (default hsr-out/validation-extra)
set -euo pipefail
cd "$(dirname "$0")/.."
aligned=$1
root=${2:-hsr-out/validation-extra}
H=.venv/bin/hsr
common=(--model "$aligned" --set evaluate.max_new_tokens=64 --set align.enabled=false --set heads.limit=2
        --set importance.limit=4 --set realign.control=false --set 'evaluate.models=[dense,pruned]' --no-progress)
$H sweep scripts/validation.yaml --out "$root/all" --methods sparsegpt --sparsities 0.4,0.5 "${common[@]}"
$H sweep scripts/validation.yaml --out "$root/all" --methods wanda --sparsities 4:8 "${common[@]}"
$H sweep scripts/validation.yaml --out "$root/attention" --sparsities 0.6,0.7 --set prune.include_mlp=false "${common[@]}"
