#!/usr/bin/env bash
# The test-split tables of the real aligned model in docs/experiments/qwen-real-model.md and docs/results/qwen-test-*.json,
# by the rubric judge and by the hand labels (tests/data/judge_labels.jsonl, round 5: every answer of these runs).
# RUN is `scripts/real_model_test.sh QWEN_GGUF RUN` (Ships, the paper's set difference); TAYLOR is RUN copied
# (cp -al) and run again with --set realign.selection=taylor --set realign.budget=10000. SCRATCH gets copies of
# both (hard links plus re-judged eval folders): by the current `rubric` judge (whatever judge the runs were made
# with) and by the hand labels. The runs themselves are only read.
# Usage: bash scripts/real_model_test_tables.sh RUN TAYLOR SCRATCH
set -euo pipefail
cd "$(dirname "$0")/.."
run=$(realpath "$1"); taylor=$(realpath "$2"); mkdir -p "$3"; scratch=$(realpath "$3")
L=tests/data/judge_labels.jsonl
rejudged() {  # rejudged SRC JUDGE DEST: SRC's stages as hard links, its evaluations re-judged by JUDGE
  rm -rf "$3" "$3.eval"
  .venv/bin/hsr judge "$1" --judge "$2" --out "$3.eval" >/dev/null
  cp -al "$1" "$3"; rm -rf "$3/eval" "$3/report"; mv "$3.eval/eval" "$3/eval"; rm -rf "$3.eval"
}
rejudged "$run" rubric "$scratch/qwen-test-rubric"
rejudged "$taylor" rubric "$scratch/qwen-test-taylor10k-rubric"
rejudged "$run" "labels:$L" "$scratch/qwen-test"
rejudged "$taylor" "labels:$L" "$scratch/qwen-test-taylor10k"
run=$scratch/qwen-test-rubric; taylor=$scratch/qwen-test-taylor10k-rubric
D=docs/experiments/qwen-real-model.md
.venv/bin/python scripts/results_tables.py $run --json docs/results/qwen-test-run.json --readme $D >/dev/null
.venv/bin/python scripts/results_tables.py $scratch/qwen-test --json docs/results/qwen-test-run-hand.json --readme $D >/dev/null
.venv/bin/python scripts/results_tables.py $taylor --json docs/results/qwen-test-taylor10k-run.json --readme $D >/dev/null
.venv/bin/python scripts/results_tables.py $scratch/qwen-test-taylor10k --json docs/results/qwen-test-taylor10k-run-hand.json --readme $D >/dev/null
.venv/bin/python scripts/compare_realign.py ships=$run ships+taylor-10k=$taylor \
  --labels $L --json docs/results/qwen-test-variants.json --markdown $scratch/qtv.md >/dev/null
T=$run/eval; TT=$taylor/eval
.venv/bin/python scripts/benign_refusal.py dense=$T/dense pruned=$T/pruned "ships realigned=$T/realigned" "ships control=$T/control" \
  "ships+taylor-10k realigned=$TT/realigned" "taylor-10k control (random heads)=$TT/control" --reference pruned --markdown $scratch/qtb.md >/dev/null
H=$scratch/qwen-test/eval; HT=$scratch/qwen-test-taylor10k/eval
.venv/bin/python scripts/benign_refusal.py dense=$H/dense pruned=$H/pruned "ships realigned=$H/realigned" "ships control=$H/control" \
  "ships+taylor-10k realigned=$HT/realigned" "taylor-10k control (random heads)=$HT/control" --reference pruned --markdown $scratch/qtbh.md >/dev/null
.venv/bin/python - "$scratch" <<'PY'
import sys
from pathlib import Path
from hsr.testing.scripts import load_script
rt = load_script("scripts/results_tables.py")
blocks = {"qwen-test-variants": Path(sys.argv[1], "qtv.md").read_text().strip(),
          "qwen-test-benign": Path(sys.argv[1], "qtb.md").read_text().strip() + "\n\n_Judge: `rubric`._",
          "qwen-test-benign-hand": Path(sys.argv[1], "qtbh.md").read_text().strip() + "\n\n_Hand labels (round 5)._"}
rt.replace_blocks([Path("docs/experiments/qwen-real-model.md")], blocks)
PY
echo tables written
