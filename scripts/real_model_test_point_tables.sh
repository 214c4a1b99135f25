#!/usr/bin/env bash
# The test-split table of one validation-chosen pruned model (scripts/real_model_test_point.sh) against the
# test run's dense model, in docs/experiments/qwen-real-model.md and docs/results/NAME[-hand].json: by the
# current `rubric` judge and by the hand labels (tests/data/judge_labels.jsonl). RUN and POINT_EVAL are only
# read; SCRATCH gets the re-judged copies.
# Usage: bash scripts/real_model_test_point_tables.sh RUN POINT_EVAL NAME SCRATCH   (NAME e.g. qwen-test-wanda45)
set -euo pipefail
cd "$(dirname "$0")/.."
run=$(realpath "$1"); point=$(realpath "$2"); name=$3; mkdir -p "$4"; scratch=$(realpath "$4")
L=tests/data/judge_labels.jsonl
for judge in rubric "labels:$L"; do
  tag=${judge%%:*}
  for pair in "dense=$run/eval/dense" "pruned=$point"; do
    label=${pair%%=*}; src=${pair#*=}
    rm -rf "$scratch/$name-$tag/$label"; mkdir -p "$scratch/$name-$tag"
    .venv/bin/hsr judge "$src" --judge "$judge" --out "$scratch/$name-$tag/$label" >/dev/null
  done
done
D=docs/experiments/qwen-real-model.md
.venv/bin/python scripts/results_tables.py "$scratch/$name-rubric/dense" "$scratch/$name-rubric/pruned" \
  --json "docs/results/$name.json" --readme $D >/dev/null
.venv/bin/python scripts/results_tables.py "$scratch/$name-labels/dense" "$scratch/$name-labels/pruned" \
  --json "docs/results/$name-hand.json" --readme $D >/dev/null
echo tables written
