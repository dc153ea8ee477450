#!/usr/bin/env bash
# Builds the release binary with the Swift runtime (stdlib, Foundation, Dispatch) linked statically, so it runs on a
# Debian 12 host with only the packages listed in deploy/runtime-packages.txt (no Swift toolchain). Checks that no
# library resolves into the toolchain and that every shared library it needs comes from a package on that list (or
# from libc6/libgcc-s1/libstdc++6, which every Debian has). Prints the binary's path as its last line.
# Usage: scripts/build-release.sh [--skip-build]
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "${1:-}" != "--skip-build" ]; then
    bash scripts/install-deps.sh >&2
    commit="$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
    if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then commit="$commit-dirty"; fi
    swift build -c release --static-swift-stdlib --product dreamsr \
        -Xcc "-DDREAMSR_BUILD_COMMIT=\"$commit\"" >&2
fi
bin="$(swift build -c release --show-bin-path)/dreamsr"
[ -x "$bin" ] || { echo "build-release: $bin was not built" >&2; exit 1; }

# 1. Nothing from the toolchain.
if ldd "$bin" | grep -E '/opt/swift|/usr/share/swift|swift' >&2; then
    echo "build-release: error: $bin links a Swift toolchain library (see above)" >&2
    exit 1
fi
# 2. Every shared library is owned by a listed runtime package or by one of the packages it depends on.
allowed="$(grep -v '^#' deploy/runtime-packages.txt | sed '/^$/d')"
closure="$( (echo "$allowed"; echo libc6; echo libgcc-s1; echo libstdc++6) | xargs apt-cache depends --recurse \
    --no-recommends --no-suggests --no-conflicts --no-breaks --no-replaces --no-enhances 2>/dev/null \
    | grep -v '^ ' | sed 's/:.*//' | sort -u)"
missing=0
while read -r lib; do
    [ -n "$lib" ] || continue
    real="$(readlink -f "$lib")"
    # dpkg knows a file by the path its package installed (/lib or /usr/lib on a merged-/usr system): try both.
    pkg="$( (dpkg -S "$real" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || dpkg -S "${real#/usr}" 2>/dev/null || true) \
        | head -n1 | cut -d: -f1)"
    if [ -z "$pkg" ] || ! grep -qx "$pkg" <<<"$closure"; then
        echo "build-release: error: $lib (package '${pkg:-none}') is not covered by deploy/runtime-packages.txt" >&2
        missing=1
    fi
done < <(ldd "$bin" | awk '/=>/ {print $3}')
[ $missing -eq 0 ] || exit 1
echo "build-release: $("$bin" --version)" >&2
echo "$bin"
