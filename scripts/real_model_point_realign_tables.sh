#!/usr/bin/env bash
# The tables of HSR at one sweep point (scripts/real_model_point_realign.sh) in docs/experiments/qwen-real-model.md
# and docs/results/: on validation (dense, pruned, realigned, control of each variant, by the `rubric` judge:
# validation is for choosing) and on test against the test run's dense model and the point's pruned model
# (scripts/real_model_test_point.sh). Test tables are by the rubric judge, and also by the hand labels with HAND=1
# (every test answer must then be labeled). Inputs are only read; SCRATCH gets re-judged copies.
# Usage: bash scripts/real_model_point_realign_tables.sh OUT SPARSITY RUN POINT_EVAL NAME SCRATCH [VARIANT...]
#   (OUT of real_model_point_realign.sh; RUN of real_model_test.sh; NAME e.g. qwen-wanda45; VARIANT: further
#   Taylor budgets built by scripts/real_model_point_variant.sh as OUT/VARIANT, e.g. taylor2000, with test evaluations
#   OUT/test-eval/VARIANT-{realigned,control})
set -euo pipefail
cd "$(dirname "$0")/.."
out=$(realpath "$1"); point=$2; run=$3; point_eval=$4; name=$5; mkdir -p "$6"; scratch=$(realpath "$6")
shift 6
variants=(paper taylor10k "$@")
D=docs/experiments/qwen-real-model.md
for variant in "${variants[@]}"; do
  v=$out/$variant
  for label in dense pruned realigned control; do
    src=$v/wanda-$point/eval/$label; [ "$label" = dense ] && src=$v/eval/dense
    rm -rf "$scratch/val-$variant/$label"; mkdir -p "$scratch/val-$variant"
    .venv/bin/hsr judge "$src" --judge rubric --out "$scratch/val-$variant/$label" >/dev/null
  done
  .venv/bin/python scripts/results_tables.py "$scratch/val-$variant"/{dense,pruned,realigned,control} \
    --json "docs/results/$name-val-$variant.json" --readme $D >/dev/null
done
rubric_only=1; [ "${HAND:-0}" = 1 ] && rubric_only=0
E=$out/test-eval
for variant in "${variants[@]}"; do
  prefix=$variant-; [ "$variant" = paper ] && prefix=
  RUBRIC_ONLY=$rubric_only bash scripts/real_model_test_point_tables.sh "$run" "$point_eval" "$name-test-$variant" "$scratch" \
    realigned="$E/${prefix}realigned" control="$E/${prefix}control"
done
echo tables written
