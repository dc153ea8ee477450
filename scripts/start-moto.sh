#!/usr/bin/env bash
# Starts moto's S3-compatible server (PyPI moto[server]) on a free loopback port for the object-storage tests,
# with request signatures checked (moto's IAM authentication on), and prints one line:
#   endpoint=http://127.0.0.1:PORT pid=PID access_key=ID secret_key=SECRET
# The keys belong to an IAM user allowed s3:*; the buckets named with --bucket exist. The server stops by itself
# when the process --owner-pid ends (and with `kill -9 PID`: started from a Swift test it may have SIGTERM blocked).
#
# Usage: scripts/start-moto.sh --owner-pid PID [--bucket NAME]...
#        scripts/start-moto.sh --install-only     (only make sure moto is installed; scripts/test.sh runs this first)
# Python: $DREAMSR_MOTO_PYTHON when it can import moto; else the venv ${DREAMSR_MOTO_VENV:-.build/moto-venv},
# created and filled with `pip install moto[server]` on first use. Exit status 3, with a line starting "SKIP:" on
# stderr, only when that install fails because PyPI cannot be reached; any other failure is exit status 1.
set -euo pipefail
cd "$(dirname "$0")/.."
owner=""
install_only=0
buckets=()
while [ $# -gt 0 ]; do
    case "$1" in
        --owner-pid) owner="$2"; shift 2 ;;
        --bucket) buckets+=("$2"); shift 2 ;;
        --install-only) install_only=1; shift ;;
        *) echo "start-moto.sh: unknown argument $1" >&2; exit 1 ;;
    esac
done
[ -n "$owner" ] || [ "$install_only" = 1 ] || { echo "start-moto.sh: --owner-pid is required" >&2; exit 1; }
# Close inherited descriptors above 2: moto and its watcher outlive this script and must not hold the caller's pipes.
for fd in /proc/$$/fd/*; do
    fd="${fd##*/}"
    if [ "$fd" -gt 2 ] 2>/dev/null; then eval "exec ${fd}>&-" 2>/dev/null || true; fi
done

python=""
if [ -n "${DREAMSR_MOTO_PYTHON:-}" ] && "$DREAMSR_MOTO_PYTHON" -c "import moto.server, boto3" 2>/dev/null; then
    python="$DREAMSR_MOTO_PYTHON"
else
    venv="${DREAMSR_MOTO_VENV:-$PWD/.build/moto-venv}"
    if ! "$venv/bin/python" -c "import moto.server, boto3" 2>/dev/null; then
        # One installer at a time (parallel test processes share the venv).
        mkdir -p "$(dirname "$venv")"
        exec 9>"$venv.lock"
        flock 9
        if ! "$venv/bin/python" -c "import moto.server, boto3" 2>/dev/null; then
            python3 -m venv "$venv" >&2 || { echo "start-moto.sh: python3 -m venv failed (install python3-venv)" >&2; exit 1; }
            if ! timeout 600 "$venv/bin/pip" install --quiet --disable-pip-version-check "moto[server]" >&2; then
                if ! timeout 20 "$venv/bin/python" -c "import urllib.request; urllib.request.urlopen('https://pypi.org/simple/moto/', timeout=15)" 2>/dev/null; then
                    echo "SKIP: PyPI cannot be reached to install moto[server]; the moto-backed object-storage tests do not run" >&2
                    exit 3
                fi
                echo "start-moto.sh: pip install moto[server] failed" >&2
                exit 1
            fi
        fi
        flock -u 9
    fi
    python="$venv/bin/python"
fi
if [ "$install_only" = 1 ]; then
    echo "moto ready: $python" >&2
    exit 0
fi

log="$(mktemp -t dreamsr-moto.XXXXXX.log)"
port="$("$python" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$python" -m moto.server -H 127.0.0.1 -p "$port" >"$log" 2>&1 &
pid=$!
# Stops moto when the owner (the test process) ends, however it ends. SIGKILL: a process spawned from a Swift test
# inherits its blocked signal mask, SIGTERM included.
( while kill -0 "$owner" 2>/dev/null && kill -0 "$pid" 2>/dev/null; do sleep 1; done; kill -9 "$pid" 2>/dev/null; rm -f "$log" ) \
    >/dev/null 2>&1 </dev/null &
disown || true

if ! keys="$("$python" - "$port" "${buckets[@]}" <<'PY'

import sys, time, json, urllib.request
import boto3
port = sys.argv[1]
endpoint = f"http://127.0.0.1:{port}"
deadline = time.time() + 60
while True:
    try:
        urllib.request.urlopen(endpoint + "/moto-api/", timeout=2)
        break
    except Exception:
        if time.time() > deadline:
            raise SystemExit("moto did not answer within 60 s")
        time.sleep(0.2)
kw = dict(endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="setup", aws_secret_access_key="setup")
iam = boto3.client("iam", **kw)
iam.create_user(UserName="dreamsr-test")
key = iam.create_access_key(UserName="dreamsr-test")["AccessKey"]
iam.put_user_policy(UserName="dreamsr-test", PolicyName="s3-all", PolicyDocument=json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
s3 = boto3.client("s3", **kw)
for bucket in sys.argv[2:]:
    s3.create_bucket(Bucket=bucket)
# From now on every request must be signed with a key moto knows, and the signature must match.
urllib.request.urlopen(urllib.request.Request(endpoint + "/moto-api/reset-auth", data=b"0", method="POST", headers={"Content-Type": "text/plain"}), timeout=10)
print(f"access_key={key['AccessKeyId']} secret_key={key['SecretAccessKey']}")
PY
)"; then
    echo "start-moto.sh: moto setup failed; its log ($log):" >&2
    cat "$log" >&2
    kill -9 "$pid" 2>/dev/null || true
    exit 1
fi
echo "endpoint=http://127.0.0.1:$port pid=$pid $keys"
