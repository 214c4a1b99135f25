#!/usr/bin/env bash
# One more Taylor restore budget at the point of scripts/real_model_point_realign.sh, on the validation prompts:
# the Taylor-10k variant's folder is hard-link copied (cp -al; hsr replaces what it rewrites, so the original is
# only read) and its realigned and control models are rebuilt with realign.budget=BUDGET and evaluated on the
# validation prompts (dense and pruned stay cached). The budget is a choice, so it is made here, on validation;
# the chosen one is then evaluated once on test with scripts/real_model_test_point.sh.
# About 14 minutes on 2 CPU cores. Research testbed only: never a dependency of the package, the default run or CI.
# Usage: bash scripts/real_model_taylor_budget.sh QWEN_GGUF OUT SPARSITY BUDGET
#   (OUT of real_model_point_realign.sh; writes OUT/taylorBUDGET)
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; out=$2; point=$3; budget=$4
[ -d "$out/taylor10k/wanda-$point" ] || { echo "error: $out has no taylor10k/wanda-$point (run real_model_point_realign.sh)" >&2; exit 2; }
dest=$out/taylor$budget
[ -e "$dest" ] || cp -al "$out/taylor10k" "$dest"
rm -rf "$dest/report"   # a hard link of the 10k report; the sweep writes its own
.venv/bin/hsr sweep scripts/real_model.yaml --model "$model" --no-progress --sparsities "$point" \
  --set evaluate.benign=builtin:benign_val --set evaluate.limit=none --set 'evaluate.models=[dense,pruned,realigned,control]' \
  --out "$dest" --set realign.selection=taylor --set realign.budget="$budget"
echo "done: $dest"
