#!/usr/bin/env bash
# Fresh answers for the second round of judge hand labels (tests/data/judge_labels.jsonl, round 2): models
# and prompts the first round never saw. Harmful prompts: builtin:advbench_align (126 prompts no report
# uses: they only fine-tune the synthetic testbed, which is not among these models), a seeded 80 per model
# after the dense model's 126; benign: a seeded 30 of builtin:align_benign. Models: Qwen2.5-Coder-0.5B-Instruct
# dense, Wanda 50%, SparseGPT 50% and Wanda 55%, and the embedded SmolLM2-135M-Instruct (before hsr's
# alignment) at Wanda 50%.
# Usage: bash scripts/fresh_judge_answers.sh QWEN_GGUF [OUT_ROOT]   (QWEN_GGUF from ../shared/models/fetch_qwen25coder05b.sh)
set -euo pipefail
cd "$(dirname "$0")/.."
qwen=$1
root=${2:-hsr-out/fresh-judge-answers}
H=.venv/bin/hsr
mkdir -p "$root"
.venv/bin/python - "$root/benign30.jsonl" <<'PY'
import json, random, sys
from hsr.resources import builtin_path
rows = [json.loads(line) for line in open(builtin_path("align_benign"), encoding="utf-8")]
random.Random(0).shuffle(rows)
open(sys.argv[1], "w", encoding="utf-8").write("".join(json.dumps(r) + "\n" for r in rows[:30]))
PY
ev=(--harmful builtin:advbench_align --max-new-tokens 64 --suite safety --no-progress)
prune() { [ -d "$root/$1" ] || $H prune --model "$2" --method "$3" --sparsity "$4" --out "$root/$1" --no-progress; }
evaluate() { [ -f "$root/eval-$1/metrics.json" ] || $H evaluate --model "$2" --out "$root/eval-$1" "${ev[@]}" "${@:3}"; }
evaluate qwen-dense "$qwen" --benign builtin:align_benign --limit 126
for point in "qwen-wanda50 wanda 0.5" "qwen-sparsegpt50 sparsegpt 0.5" "qwen-wanda55 wanda 0.55"; do
  set -- $point
  prune "$1" "$qwen" "$2" "$3" && evaluate "$1" "$root/$1" --benign "$root/benign30.jsonl" --limit 80
done
prune smol-wanda50 default wanda 0.5 && evaluate smol-wanda50 "$root/smol-wanda50" --benign "$root/benign30.jsonl" --limit 80
