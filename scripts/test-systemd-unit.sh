#!/usr/bin/env bash
# Tests the documented systemd install without touching the machine: in a private mount namespace whose /etc,
# /var/lib and /usr/local are overlays (thrown away at exit), it runs scripts/install-service.sh as documented, then
#   1. `systemd-analyze verify` on the installed unit: exit 0 and not one warning;
#   2. the unit's ExecStart, with its Environment= lines, as its User=, plus `--check`: exit 0, "configuration OK";
#   3. the same with a broken pipelines folder: exit 78, which the unit's RestartPreventExitStatus= names;
#   4. TimeoutStopSec leaves a margin over shutdown.grace_seconds + the 30 s cancel window;
#   5. a member of group dreamsr can drop a file into the watch folder; the output folder is group-readable.
# Needs root (CI runs as root) and a built binary. Usage: scripts/test-systemd-unit.sh [BINARY]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-.build/debug/dreamsr}")"
[ -x "$bin" ] || { echo "test-systemd-unit: build first ($bin missing)" >&2; exit 1; }
[ "$(id -u)" -eq 0 ] || { echo "test-systemd-unit: needs root (mount namespace + overlays)" >&2; exit 1; }
command -v systemd-analyze >/dev/null || { echo "test-systemd-unit: systemd-analyze missing (apt-get install systemd)" >&2; exit 1; }
[ -f models/realesrgan-x4plus/REALESRGAN_X4PLUS_UP4X.bin ] || bash scripts/fetch-models.sh >&2

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
export DREAMSR_TEST_BIN="$bin" DREAMSR_TEST_SCRATCH="$scratch"
exec timeout 300 unshare --mount --propagation private bash -c '
set -euo pipefail
fail() { echo "test-systemd-unit: FAIL: $*" >&2; exit 1; }
for d in /etc /var/lib /usr/local; do
    n="$(echo "$d" | tr / _)"
    mkdir -p "$DREAMSR_TEST_SCRATCH/$n/up" "$DREAMSR_TEST_SCRATCH/$n/work"
    mount -t overlay overlay -o "lowerdir=$d,upperdir=$DREAMSR_TEST_SCRATCH/$n/up,workdir=$DREAMSR_TEST_SCRATCH/$n/work" "$d"
done
bash scripts/install-service.sh --binary "$DREAMSR_TEST_BIN" --models ./models --no-start >/dev/null
unit=/etc/systemd/system/dreamsr.service

# 1. systemd-analyze verify: clean.
out="$(systemd-analyze verify "$unit" 2>&1)" || fail "systemd-analyze verify failed: $out"
[ -z "$out" ] || fail "systemd-analyze verify warned: $out"
echo "ok 1 - systemd-analyze verify $unit: clean"

# 2. ExecStart + Environment= + User=, with --check.
envs=(); while IFS= read -r line; do envs+=("${line#Environment=}"); done < <(grep "^Environment=" "$unit")
exec_start="$(sed -n "s/^ExecStart=//p" "$unit")"
user="$(sed -n "s/^User=//p" "$unit")"
read -r -a argv <<<"$exec_start"
run_as_unit() { env -i PATH=/usr/bin:/bin HOME=/var/lib/dreamsr "$@" setpriv --reuid="$user" --regid="$user" --init-groups -- "${argv[@]}" --check; }
out="$(cd /var/lib/dreamsr && run_as_unit "${envs[@]}" 2>&1)" || fail "ExecStart --check failed: $out"
grep -q "configuration OK" <<<"$out" || fail "ExecStart --check did not say configuration OK: $out"
echo "ok 2 - ExecStart --check as $user with the unit environment: configuration OK"

# 3. A configuration error exits 78, and the unit does not restart on it.
set +e
out="$(cd /var/lib/dreamsr && run_as_unit "${envs[@]}" DREAMSR_PIPELINES_DIR=/nonexistent 2>&1)"; rc=$?
set -e
[ "$rc" -eq 78 ] || fail "broken pipelines_dir exited $rc, expected 78: $out"
grep -q "^RestartPreventExitStatus=78" "$unit" || fail "unit lacks RestartPreventExitStatus=78"
echo "ok 3 - configuration error exits 78; RestartPreventExitStatus=78"

# 4. Stop timeout margin.
grace="$(sed -n "s/^ *grace_seconds: *\([0-9]*\).*/\1/p" /etc/dreamsr/dreamsr.yaml)"
stop="$(sed -n "s/^TimeoutStopSec=//p" "$unit")"
[ -n "$grace" ] && [ -n "$stop" ] || fail "could not read grace_seconds ($grace) / TimeoutStopSec ($stop)"
[ "$stop" -ge $((grace + 30 + 15)) ] || fail "TimeoutStopSec=$stop leaves no margin over grace $grace + 30 s cancel"
echo "ok 4 - TimeoutStopSec=$stop > grace $grace + cancel 30 + 15 s margin"

# 5. Folder permissions for operators in group dreamsr.
id dreamsr-operator >/dev/null 2>&1 || useradd --no-create-home --groups dreamsr dreamsr-operator
setpriv --reuid=dreamsr-operator --regid=dreamsr-operator --init-groups -- sh -c "echo x > /var/lib/dreamsr/watch/dropped.png" \
    || fail "a member of group dreamsr cannot write to /var/lib/dreamsr/watch"
perm="$(stat -c %A /var/lib/dreamsr/output)"
[ "${perm:4:1}" = "r" ] || fail "output folder not group-readable ($perm)"
echo "ok 5 - watch folder writable and output folder readable by group dreamsr"
echo "test-systemd-unit: 5 passed, 0 failed"
'
