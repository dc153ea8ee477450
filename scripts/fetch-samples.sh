#!/usr/bin/env bash
# Fetches sample photos for the quick start and tests from the scikit-image wheel on PyPI (BSD-3 data) into
# ./samples (or $1). Nothing third-party is committed to the repository. Idempotent.
set -euo pipefail
dest="${1:-samples}"
mkdir -p "$dest"
want=(astronaut.png chelsea.png coffee.png)
have=1
for f in "${want[@]}"; do [ -s "$dest/$f" ] || have=0; done
if [ $have -eq 1 ]; then echo "fetch-samples: samples present in $dest"; exit 0; fi
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.11 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$tmp" "scikit-image==0.26.0"
whl="$(ls "$tmp"/scikit_image-*.whl)"
python3 - "$whl" "$dest" "${want[@]}" <<'PY'
import sys, zipfile, os
whl, dest, names = sys.argv[1], sys.argv[2], sys.argv[3:]
with zipfile.ZipFile(whl) as z:
    for n in names:
        data = z.read("skimage/data/" + n)
        tmp = os.path.join(dest, "." + n + ".part")
        with open(tmp, "wb") as f:
            f.write(data)
        os.replace(tmp, os.path.join(dest, n))
        print("fetch-samples:", os.path.join(dest, n), len(data), "bytes")
PY
