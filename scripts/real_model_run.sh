#!/usr/bin/env bash
# The whole HSR pipeline on a real aligned model (scripts/real_model.yaml), validation split.
# Usage: bash scripts/real_model_run.sh QWEN_GGUF [OUT]   (QWEN_GGUF from ../shared/models/fetch_qwen25coder05b.sh)
# Research testbed only: never a dependency of the package, the default run or CI.
set -euo pipefail
cd "$(dirname "$0")/.."
model=$1
out=${2:-hsr-out/qwen-validation}
.venv/bin/hsr run scripts/real_model.yaml --model "$model" --out "$out" --no-progress
