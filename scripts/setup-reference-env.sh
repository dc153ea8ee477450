#!/usr/bin/env bash
# Creates .venv-ref: the PyTorch reference environment (CPU use) for the fixture generators in tools/ and the
# baselines of the benchmarks (torch, diffusers, transformers, tokenizers, ncnn). About 6 GB, from PyPI.
# Not needed to build, test or run dreamsr. Usage: scripts/setup-reference-env.sh [DIR] (default .venv-ref)
set -euo pipefail
cd "$(dirname "$0")/.."
venv="${1:-.venv-ref}"
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv" || { echo "setup-reference-env: needs python3-venv (apt-get install python3-venv)" >&2; exit 1; }
fi
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch diffusers transformers safetensors numpy tokenizers sentencepiece protobuf ncnn
echo "setup-reference-env: ready; use $venv/bin/python or export DREAMSR_REF_PYTHON=$PWD/$venv/bin/python"
