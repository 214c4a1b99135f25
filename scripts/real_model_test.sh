#!/usr/bin/env bash
# The test-split report on the real aligned model, run once after the settings were chosen on validation
# (docs/experiments/qwen-real-model.md): dense, pruned, realigned and control answer every harmful test
# prompt (builtin:advbench_eval + builtin:harmbench, 300) and the benign test prompts (builtin:benign, 64),
# 64 new tokens. VALIDATION_RUN is the finished `hsr run` folder of the chosen variant (made by
# scripts/real_model_run.sh and its variants): its prune, heads, importance and realign stages are reused,
# only the evaluations run. Research testbed only: never a dependency of the package, the default run or CI.
# Given the model's GGUF instead of a run folder, it runs the whole pipeline of scripts/real_model.yaml with
# the test evaluation (same stages, no validation evaluation). Extra arguments go to `hsr run` (for the
# chosen variant's settings, e.g. --set realign.selection=taylor --set realign.budget=10000).
# Usage: bash scripts/real_model_test.sh VALIDATION_RUN|QWEN_GGUF OUT [HSR_RUN_ARGS...]
set -euo pipefail
cd "$(dirname "$0")/.."
run=$1
out=$2
shift 2
if [ -f "$run" ] && [ "${run##*.}" = gguf ]; then
  from_model=1
else
  from_model=0
  [ -f "$run/config.yaml" ] || { echo "error: $run is neither an hsr run folder (no config.yaml) nor a .gguf file" >&2; exit 2; }
fi
[ -e "$out" ] && { echo "error: $out exists; pick a new folder" >&2; exit 2; }
harmful="$out.test-harmful.jsonl"
.venv/bin/python - "$harmful" <<'PY'
import json, sys
from hsr.resources import builtin_path
rows = []
for name in ("advbench_eval", "harmbench"):
    for line in open(builtin_path(name), encoding="utf-8"):
        if line.strip():
            r = json.loads(line)
            rows.append({"prompt": r["prompt"], "id": f"{name}/{r['id']}", "source": name})
open(sys.argv[1], "w", encoding="utf-8").write("".join(json.dumps(r) + "\n" for r in rows))
print(len(rows), "harmful test prompts ->", sys.argv[1])
PY
test_eval=(--set evaluate.harmful="$harmful" --set evaluate.benign=builtin:benign --set evaluate.limit=none)
if [ "$from_model" = 1 ]; then
  .venv/bin/hsr run scripts/real_model.yaml --model "$run" --out "$out" "${test_eval[@]}" --no-progress "$@"
else
  cp -al "$run" "$out"  # hard links: reused stages stay as they are; hsr replaces what it rewrites
  rm -rf "$out/eval" "$out/report"
  .venv/bin/hsr run "$out/config.yaml" --set out="$out" "${test_eval[@]}" --no-progress "$@"
fi
