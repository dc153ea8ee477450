#!/usr/bin/env bash
# The test command: installs what the tests need (system packages, the Real-ESRGAN weights, tokenizer data,
# sample photos), builds everything and runs the whole test suite. CI runs this (.ci/run).
# Every step has a deadline: a hung build or test fails the run instead of stalling CI (whole run < 20 min on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
for s in fetch-models fetch-tokenizers fetch-samples; do
    if [ -f "scripts/$s.sh" ]; then bash "scripts/$s.sh"; fi
done
# Every import declared in Package.swift, no unused package (reads the manifest only).
timeout --kill-after=30 300 bash scripts/check-imports.sh
timeout --kill-after=30 1200 swift build --build-tests
# moto's S3 server for the object-storage tests, installed into .build/moto-venv (exit 3: PyPI unreachable; the
# moto-backed tests then skip and say so).
moto_rc=0; timeout --kill-after=30 900 bash scripts/start-moto.sh --install-only || moto_rc=$?
if [ "$moto_rc" -ne 0 ] && [ "$moto_rc" -ne 3 ]; then exit "$moto_rc"; fi
# The documented systemd install, in a throw-away mount namespace (needs root, as CI runs).
SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
timeout --kill-after=30 300 $SUDO bash scripts/test-systemd-unit.sh .build/debug/dreamsr
# The live status page in headless Chromium while a job runs (installs the chromium package if missing).
timeout --kill-after=30 600 bash scripts/test-status-page.sh .build/debug/dreamsr
# Serially: a few kernel tests switch the process-wide SIMD variant (DREAMSR_KERNEL_ISA) to compare against scalar.
timeout --kill-after=60 1500 swift test --skip-build --no-parallel
# The engine, model parity and DreamSR pipeline tests again under AddressSanitizer (UpscalingTests' Real-ESRGAN
# tiling and zoo suites run in the plain pass only: minutes under ASan for code the model parity tests cover), so tensor memory read after its tensor died or past
# its end (a kernel overrun, a view or pointer that escaped its scope) fails the run instead of passing by luck; the
# lifetime shortening of optimised builds is kept out by Tensor's API (no public raw pointer). Engine targets only
# (DREAMSR_ENGINE_ONLY, see Package.swift), in their own build path. Leak checks off: the Swift runtime's caches
# live until exit. The lazy-loading RSS test is skipped: ASan's shadow memory and quarantine change what it measures.
export DREAMSR_ENGINE_ONLY=1 ASAN_OPTIONS=detect_leaks=0
timeout --kill-after=30 900 swift build --build-tests --sanitize=address --build-path .build-asan
timeout --kill-after=60 600 swift test --skip-build --sanitize=address --build-path .build-asan --no-parallel \
    --filter 'TensorTests|CheckpointsTests|ModelsTests|DreamSRPipelineTests' --skip '[lL]azyBF16LoadingDoesNotHoldWholeF32Copy'
unset DREAMSR_ENGINE_ONLY ASAN_OPTIONS
