#!/usr/bin/env bash
# One HSR variant at one point of the real model's validation sweep, evaluated on the validation prompts: FROM (a
# sweep folder, or another variant's) is hard-link copied to DEST (cp -al; hsr replaces what it rewrites, so FROM
# is only read), and the sweep is re-run there with the extra settings, so only the stages they change are rebuilt
# (dense and pruned stay cached). The one place that knows how a point's variants are evaluated on validation:
# scripts/real_model_point_realign.sh builds its set-difference and Taylor-10k variants with it, and a further
# Taylor budget is one call, e.g. `... OUT/taylor10k OUT/taylor2000 0.45 --set realign.selection=taylor
# --set realign.budget=2000` (about 14 minutes on 2 CPU cores). Choices are made on these validation runs; the
# chosen variant is then evaluated once on test with scripts/real_model_test_point.sh.
# Research testbed only: never a dependency of the package, the default run or CI.
# Usage: bash scripts/real_model_point_variant.sh QWEN_GGUF FROM DEST SPARSITY [SWEEP_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; from=$2; dest=$3; point=$4; shift 4
[ -f "$from/config.yaml" ] || { echo "error: $from is not an hsr sweep folder (no config.yaml)" >&2; exit 2; }
[ -e "$dest" ] || cp -al "$from" "$dest"
rm -rf "$dest/report"   # FROM's report, hard-linked; the sweep writes DEST's own
.venv/bin/hsr sweep scripts/real_model.yaml --model "$model" --no-progress --sparsities "$point" \
  --set evaluate.benign=builtin:benign_val --set evaluate.limit=none --set 'evaluate.models=[dense,pruned,realigned,control]' \
  --out "$dest" "$@"
echo "done: $dest"
