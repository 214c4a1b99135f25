#!/usr/bin/env bash
# The real aligned model's validation-sweep tables in docs/experiments/qwen-real-model.md (and
# docs/results/qwen-validation[-hand].json: dense against Wanda 50% on every validation prompt). SWEEP is the
# folder of scripts/real_model_sweep.sh; it is only read: SCRATCH gets it re-judged by the current `rubric`
# judge and by the hand labels (tests/data/judge_labels.jsonl covers every answer: rounds 1 and 3 the dense
# and Wanda-50% ones, round 6 the rest).
# Usage: bash scripts/real_model_sweep_tables.sh SWEEP SCRATCH
set -euo pipefail
cd "$(dirname "$0")/.."
sweep=$(realpath "$1"); mkdir -p "$2"; scratch=$(realpath "$2")
L=tests/data/judge_labels.jsonl
R=$scratch/qwen-sweep-rubric; H=$scratch/qwen-sweep-hand
.venv/bin/hsr judge "$sweep" --judge rubric --out "$R" --overwrite >/dev/null
.venv/bin/hsr judge "$sweep" --judge "labels:$L" --out "$H" --overwrite >/dev/null
D=docs/experiments/qwen-real-model.md
.venv/bin/python scripts/results_tables.py "$R/eval/dense" "$R/wanda-0.5/eval/pruned" --json docs/results/qwen-validation.json \
  --readme $D --sweep "qwen-sweep=$R/report/sweep.md" >/dev/null
.venv/bin/python scripts/results_tables.py "$H/eval/dense" "$H/wanda-0.5/eval/pruned" --json docs/results/qwen-validation-hand.json \
  --readme $D --sweep "qwen-sweep-hand=$H/report/sweep.md" >/dev/null
echo tables written
