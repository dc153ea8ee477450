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
