#!/usr/bin/env bash
# The test command: installs what the tests need (system packages, the Real-ESRGAN weights, tokenizer data,
# sample photos), builds everything and runs the whole test suite. CI runs this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
for s in fetch-models fetch-tokenizers fetch-samples; do
    if [ -f "scripts/$s.sh" ]; then bash "scripts/$s.sh"; fi
done
swift build --build-tests
# Serially: a few kernel tests switch the process-wide SIMD variant (DREAMSR_KERNEL_ISA) to compare against scalar.
swift test --skip-build --no-parallel
