#!/usr/bin/env bash
# The test-split table of one validation-chosen pruned model (scripts/real_model_test_point.sh) against the
# test run's dense model, in docs/experiments/qwen-real-model.md and docs/results/NAME[-hand].json: by the
# current `rubric` judge and by the hand labels (tests/data/judge_labels.jsonl). RUN and POINT_EVAL are only
# read; SCRATCH gets the re-judged copies. Extra LABEL=EVAL_DIR arguments (the point's realigned and control
# evaluations) join the tables; the hand-label table needs every one of their answers labeled, so with
# RUBRIC_ONLY=1 only the rubric table is written.
# Usage: bash scripts/real_model_test_point_tables.sh RUN POINT_EVAL NAME SCRATCH [LABEL=EVAL_DIR...]
#   (NAME e.g. qwen-test-wanda45)
set -euo pipefail
cd "$(dirname "$0")/.."
run=$(realpath "$1"); point=$(realpath "$2"); name=$3; mkdir -p "$4"; scratch=$(realpath "$4")
shift 4
L=tests/data/judge_labels.jsonl
judges=(rubric "labels:$L"); [ "${RUBRIC_ONLY:-0}" = 1 ] && judges=(rubric)
D=docs/experiments/qwen-real-model.md
for judge in "${judges[@]}"; do
  tag=${judge%%:*}; suffix=; [ "$tag" = labels ] && suffix=-hand
  dirs=()
  for pair in "dense=$run/eval/dense" "pruned=$point" "$@"; do
    dest=$scratch/$name-$tag/${pair%%=*}; dirs+=("$dest")
    rm -rf "$dest"; mkdir -p "$scratch/$name-$tag"
    .venv/bin/hsr judge "${pair#*=}" --judge "$judge" --out "$dest" >/dev/null
  done
  .venv/bin/python scripts/results_tables.py "${dirs[@]}" --json "docs/results/$name$suffix.json" --readme $D >/dev/null
done
echo tables written
