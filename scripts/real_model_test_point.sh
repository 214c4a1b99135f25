#!/usr/bin/env bash
# One pruned model of the real model's validation sweep (scripts/real_model_sweep.sh), evaluated once on the
# test split with the test run's settings (scripts/real_model_test.sh: every harmful prompt of
# builtin:advbench_eval + builtin:harmbench, builtin:benign, 64 new tokens), so that the pruning effect of the
# sparsity chosen on validation is reported on test against the test run's dense evaluation.
# Research testbed only: never a dependency of the package, the default run or CI.
# The same point's realigned and control models (built by the sweep) are evaluated the same way, with LABEL
# realigned or control.
# Usage: bash scripts/real_model_test_point.sh MODEL_DIR TEST_HARMFUL_JSONL OUT_EVAL_DIR [LABEL]
#   (TEST_HARMFUL_JSONL: the RUN.test-harmful.jsonl that scripts/real_model_test.sh wrote; LABEL: pruned)
set -euo pipefail
cd "$(dirname "$0")/.."
[ -e "$3" ] && { echo "error: $3 exists; pick a new folder" >&2; exit 2; }
.venv/bin/hsr evaluate --model "$1" --harmful "$2" --benign builtin:benign --limit none --max-new-tokens 64 \
  --batch-size 16 --max-length 256 --mcq none --ppl-max-tokens 4096 --seed 0 --label "${4:-pruned}" --no-progress --out "$3"
