#!/usr/bin/env bash
# The live status page in a real browser: starts `dreamsr serve` (watch folder, Real-ESRGAN) on a free port, drops a
# photo, and while the job runs loads http://127.0.0.1:PORT/ in headless Chromium (Debian package): the in-flight
# job must appear in the rendered DOM; a screenshot goes to out/status-page-inflight.png. After the job, a second
# screenshot (out/status-page-done.png) must show the recent job with its before/after thumbnails, which must be JPEGs.
# Usage: scripts/test-status-page.sh [BINARY]   (default .build/debug/dreamsr)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="$(realpath "${1:-.build/debug/dreamsr}")"
[ -x "$bin" ] || { echo "test-status-page: build first ($bin missing)" >&2; exit 1; }
if ! command -v chromium >/dev/null; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium >/dev/null
fi
bash scripts/fetch-models.sh >/dev/null
bash scripts/fetch-samples.sh >/dev/null
fail() { echo "test-status-page: FAIL: $*" >&2; exit 1; }
t="$(mktemp -d)"
pid=""
cleanup() { [ -n "$pid" ] && kill "$pid" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$t"; }
trap cleanup EXIT
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')"
mkdir -p "$t/in" "$t/out" out
"$bin" serve --watch "$t/in" --output "$t/out" --metrics "127.0.0.1:$port" >"$t/daemon.log" 2>&1 &
pid=$!
url="http://127.0.0.1:$port"
wait_for() { # seconds, command...
    local deadline=$(( $(date +%s) + $1 )); shift
    until "$@"; do [ "$(date +%s)" -lt "$deadline" ] || return 1; sleep 0.2; done
}
wait_for 120 curl -sf "$url/ready" -o /dev/null || fail "daemon not ready: $(tail -5 "$t/daemon.log")"
curl -sf "$url/" -o /dev/null   # a page view turns thumbnails on
vips crop samples/astronaut.png "$t/astronaut.png" 128 48 256 256   # a 256x256 crop: a job of a few seconds
mv "$t/astronaut.png" "$t/in/astronaut.png"
wait_for 60 sh -c "curl -sf '$url/' | grep -q 'astronaut.png'" || fail "job never appeared on the page"
browse() { # what, dom file, screenshot file
    timeout 60 chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,900 \
        --dump-dom "$url/" >"$2" 2>/dev/null || fail "chromium --dump-dom ($1)"
    timeout 60 chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1100,900 \
        --screenshot="$3" "$url/" >/dev/null 2>&1 || fail "chromium --screenshot ($1)"
    [ -s "$3" ] || fail "no screenshot ($1)"
}
browse in-flight "$t/inflight.html" out/status-page-inflight.png
grep -q 'id="in-flight"' "$t/inflight.html" || fail "rendered page has no in-flight table"
grep -q 'astronaut.png' "$t/inflight.html" || fail "in-flight job missing from the rendered page"
grep -q '>restore<\|>decode<\|>encode<' "$t/inflight.html" || fail "in-flight job shows no stage"
echo "ok 1 - in-flight job on the page rendered by $(chromium --version 2>/dev/null | head -n1); out/status-page-inflight.png"
wait_for 300 test -f "$t/in/done/astronaut.png" || fail "job did not finish: $(tail -5 "$t/daemon.log")"
wait_for 30 sh -c "curl -sf '$url/' | grep -q 'after.jpg'" || fail "no thumbnails on the page"
browse done "$t/done.html" out/status-page-done.png
grep -q 'id="recent"' "$t/done.html" || fail "no recent table"
n="$(grep -o '/thumbnails/[0-9]*/after.jpg' "$t/done.html" | head -n1)"
[ -n "$n" ] || fail "no after thumbnail in the rendered page"
for which in before after; do
    curl -sf "$url${n%/after.jpg}/$which.jpg" -o "$t/$which.jpg" || fail "GET ${n%/after.jpg}/$which.jpg"
    [ "$(head -c 3 "$t/$which.jpg" | od -An -tx1 | tr -d ' ')" = "ffd8ff" ] || fail "$which thumbnail is not a JPEG"
done
code="$(curl -s -o /dev/null -w '%{http_code}' "$url/thumbnails/999999/after.jpg")"
[ "$code" = "404" ] || fail "unknown thumbnail answered $code"
echo "ok 2 - recent job with before/after JPEG thumbnails; out/status-page-done.png"
echo "test-status-page: 2 passed, 0 failed"
