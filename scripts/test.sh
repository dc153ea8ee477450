#!/usr/bin/env bash
# The test command: installs what the tests need (system packages, the Real-ESRGAN weights, tokenizer data,
# sample photos), builds everything and runs the whole test suite. CI runs this (.ci/run).
# Every step has a deadline: a hung build or test fails the run instead of stalling CI. Goal: a whole run under 20 min
# on 2 cores (17-18 min on the 2-core AVX-512 VM of 2026-11; 24.5 min on a 2-core AVX2 Zen VM, 2026-12-03, where
# the two debug builds alone take ~13 min).
#
# To fit 2 cores, work that mostly waits runs beside work that computes: the downloads beside the builds, the
# AddressSanitizer build (niced: it takes what the main build leaves idle) beside the main build, the
# AddressSanitizer tests beside the main test passes. A background step's output is printed when it is waited for;
# the run fails when any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
logs="$(mktemp -d)"
declare -A pids=()
# Stops the background steps still running (each has its own process group) and removes the logs.
finish() {
    for pid in "${pids[@]}"; do kill -TERM -- "-$pid" 2>/dev/null || true; done
    rm -rf "$logs"
}
trap finish EXIT
# background NAME COMMAND...: runs COMMAND in its own process group, output in $logs/NAME.log.
background() { local name="$1"; shift; setsid "$@" > "$logs/$name.log" 2>&1 < /dev/null & pids[$name]=$!; }
# await NAME: waits for the background step NAME, prints its output, returns its exit status.
await() {
    local rc=0
    wait "${pids[$1]}" || rc=$?
    unset "pids[$1]"
    echo "--- $1 (exit $rc)"
    cat "$logs/$1.log"
    return "$rc"
}

# Every import declared in Package.swift, no unused package (reads the manifest only).
timeout --kill-after=30 300 bash scripts/check-imports.sh
# Downloads, while the builds compile: the weights, tokenizer data and sample photos; moto's S3 server for the
# object-storage tests, installed into .build/moto-venv (exit 3: PyPI unreachable; the moto-backed tests then skip
# and say so).
background fetch timeout --kill-after=30 900 bash -c \
    'set -e; for s in fetch-models fetch-tokenizers fetch-samples; do bash "scripts/$s.sh"; done'
background moto timeout --kill-after=30 900 bash -c \
    'rc=0; bash scripts/start-moto.sh --install-only || rc=$?; if [ "$rc" -eq 3 ]; then exit 0; fi; exit "$rc"'
# The dependencies' checkouts and Package.resolved before the builds start (the builds then only read them).
timeout --kill-after=30 300 swift package resolve
# The engine, model parity and DreamSR pipeline tests again under AddressSanitizer (UpscalingTests' Real-ESRGAN
# tiling and zoo suites run in the plain pass only: minutes under ASan for code the model parity tests cover), so
# tensor memory read after its tensor died or past its end (a kernel overrun, a view or pointer that escaped its
# scope) fails the run instead of passing by luck; the lifetime shortening of optimised builds is kept out by
# Tensor's API (no public raw pointer). Engine targets only (DREAMSR_ENGINE_ONLY, see Package.swift), in their own
# build path. Leak checks off: the Swift runtime's caches live until exit. The lazy-loading RSS test is skipped:
# ASan's shadow memory and quarantine change what it measures. The ASan tests start once the main build is done
# (they use about half a core: beside the main test passes they take cores those leave idle, beside the main build
# they would slow it). (`timeout --foreground`: stays in the step's process group, which finish() stops.)
background asan env DREAMSR_ENGINE_ONLY=1 ASAN_OPTIONS=detect_leaks=0 bash -c '
    set -e
    timeout --foreground --kill-after=30 1200 nice -n 10 swift build --build-tests --sanitize=address --build-path .build-asan
    while [ ! -e "$0" ]; do sleep 2; done
    timeout --foreground --kill-after=60 900 swift test --skip-build --sanitize=address --build-path .build-asan --no-parallel \
        --filter "TensorTests|CheckpointsTests|ModelsTests|DreamSRPipelineTests" --skip "[lL]azyBF16LoadingDoesNotHoldWholeF32Copy"' \
    "$logs/main-build-done"
timeout --kill-after=30 1200 swift build --build-tests
touch "$logs/main-build-done"
await fetch
await moto
# The documented systemd install, in a throw-away mount namespace (needs root, as CI runs).
SUDO=""; if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
timeout --kill-after=30 300 $SUDO bash scripts/test-systemd-unit.sh .build/debug/dreamsr
# The live status page in headless Chromium while a job runs (installs the chromium package if missing).
timeout --kill-after=30 600 bash scripts/test-status-page.sh .build/debug/dreamsr
# The Kafka suites that mostly wait (on the mock broker's rebalance rounds and on daemon processes), in parallel:
# every test has its own topics and consumer group. The in-process connector tests, the daemon kill-and-restart
# tests, the three-member scale-out.
waiting='KafkaConnectorTests\.|KafkaDaemonTests|KafkaScaleOutTests'
timeout --kill-after=60 600 swift test --skip-build --filter "$waiting"
# Everything else, serially: a few kernel tests switch the process-wide SIMD variant (DREAMSR_KERNEL_ISA) to compare
# against scalar.
timeout --kill-after=60 1500 swift test --skip-build --no-parallel --skip "$waiting"
await asan
