#!/usr/bin/env bash
# HSR at one point of the real model's validation sweep (scripts/real_model_sweep.sh), the point chosen there:
# its realigned and control models (already built by the sweep with the paper's set difference) are evaluated
# on the validation prompts, the Taylor-10k variant (realign.selection=taylor, realign.budget=10000, chosen on
# validation at Wanda 50%) is built and evaluated the same way, and then all four are evaluated once on the test
# prompts (scripts/real_model_test_point.sh). The sweep folder is only read: each variant works in a hard-linked
# copy (cp -al; hsr replaces what it rewrites). Every stage is cached, so an interrupted run resumes.
# About 70 minutes on 2 CPU cores. Research testbed only: never a dependency of the package, the default run or CI.
# Usage: bash scripts/real_model_point_realign.sh QWEN_GGUF SWEEP SPARSITY TEST_HARMFUL_JSONL OUT
#   (SPARSITY as the sweep names it, e.g. 0.45; TEST_HARMFUL_JSONL: the RUN.test-harmful.jsonl of
#   scripts/real_model_test.sh). OUT gets paper/ and taylor10k/ (the sweep copies) and test-eval/{realigned,
#   control,taylor10k-realigned,taylor10k-control}.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1; sweep=$2; point=$3; test_harmful=$4; out=$5
[ -d "$sweep/wanda-$point/pruned" ] || { echo "error: $sweep has no wanda-$point point" >&2; exit 2; }
mkdir -p "$out"
bash scripts/real_model_point_variant.sh "$model" "$sweep" "$out/paper" "$point"
bash scripts/real_model_point_variant.sh "$model" "$out/paper" "$out/taylor10k" "$point" \
  --set realign.selection=taylor --set realign.budget=10000
for variant in paper taylor10k; do
  for label in realigned control; do
    name=$label; [ "$variant" = taylor10k ] && name=taylor10k-$label
    dest=$out/test-eval/$name
    [ -f "$dest/metrics.json" ] && continue
    rm -rf "$dest"; mkdir -p "$out/test-eval"
    bash scripts/real_model_test_point.sh "$out/$variant/wanda-$point/$label" "$test_harmful" "$dest" "$label"
  done
done
echo "done: $out"
