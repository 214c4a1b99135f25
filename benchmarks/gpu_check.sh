#!/usr/bin/env bash
# One prepared GPU check (issue 19), under 8 minutes on one GPU, every step time-bounded:
#   1. the tests marked `cuda` (tiny model placed on cuda and split GPU/CPU, heads fast vs naive,
#      generation, the lm-eval bridge, hsr's nccl process group);
#   2. benchmarks/heads.py on SmolLM2-135M-Instruct with the GPU default --max-batch-tokens (32768)
#      and with 1024, wall clock, peak GPU memory per variant;
#   3. benchmarks/memory.py with a GPU budget (--max-memory 0=<a quarter of the model>), peak GPU memory
#      capped vs uncapped;
#   4. `hsr heads` under torchrun on cuda (--nproc-per-node = visible GPUs, at most 2; with one GPU the
#      world size is 1 and hsr sets up no process group: step 1 covers nccl then).
# Step 0 converts the embedded SmolLM2 GGUF once (cached under $HSR_CACHE), so the timed steps load it.
# Writes results.json (per step: exit code, seconds, its numbers) and one log per step into the output
# folder: the first argument, else $OUT, else gpu-check-out/. Without a CUDA device it prints
# "no CUDA device: skipped" and exits 0.
#
#   bash benchmarks/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
DEST=${1:-${OUT:-gpu-check-out}}
mkdir -p "$DEST"
DEST=$(cd "$DEST" && pwd)
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    echo "no CUDA device: skipped" | tee "$DEST/results.txt"
    exit 0
fi

STEPS="$DEST/steps.tsv"
: > "$STEPS"
# step NAME SECONDS CMD...: run CMD with a hard time limit, log to NAME.log, record exit code and seconds.
step() {
    local name=$1 limit=$2
    shift 2
    local start rc
    start=$(date +%s)
    echo "== $name (limit ${limit}s): $*"
    timeout --kill-after=5 "$limit" "$@" > "$DEST/$name.log" 2>&1
    rc=$?
    printf '%s\t%s\t%s\n' "$name" "$rc" "$(( $(date +%s) - start ))" >> "$STEPS"
    tail -n 3 "$DEST/$name.log"
    [ "$rc" = 0 ] || echo "   -> $name exited $rc (124 = timed out); see $DEST/$name.log"
}

NGPU=$("$PY" -c "import torch; print(torch.cuda.device_count())")
NPROC=$(( NGPU >= 2 ? 2 : 1 ))
"$PY" -c "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0))" > "$DEST/device.txt" 2>&1

# Limits add up to 480 s: the whole check stays under 8 minutes even if every step runs out of time.
step convert_default 45 "$PY" -c "from hsr.loading import locate_model; print(locate_model('default'))"
step cuda_tests 75 "$PY" -m pytest -q -m cuda tests/test_cuda.py -p no:cacheprovider
step heads_gpu_default 75 "$PY" benchmarks/heads.py --device cuda:0 --wall --skip-tiny \
    --max-batch-tokens device --json "$DEST/heads_gpu_default.json"
step heads_1024 75 "$PY" benchmarks/heads.py --device cuda:0 --wall --skip-tiny \
    --max-batch-tokens 1024 --json "$DEST/heads_1024.json"
step memory 150 "$PY" benchmarks/memory.py --device cuda:0 --json "$DEST/memory.json"
step torchrun_heads 60 "$PY" -m torch.distributed.run --standalone --nproc-per-node "$NPROC" -m hsr heads \
    --model default --device cuda --limit 8 --no-progress --overwrite --out "$DEST/torchrun_heads"

"$PY" benchmarks/gpu_check_summary.py "$DEST" "$NPROC"
echo "results: $DEST/results.json"
