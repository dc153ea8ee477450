#!/usr/bin/env bash
# Release check (not in CI: it downloads a Debian root and builds a release binary, ~10-20 minutes on 2 cores).
# Builds the static release binary (scripts/build-release.sh), makes a minimal Debian 12 root with debootstrap,
# installs ONLY deploy/runtime-packages.txt into it, then inside the chroot (no Swift toolchain there):
#   dreamsr --version; dreamsr upscale on a photo (checks the output's size); scripts/install-service.sh (the
#   documented install) and the unit's ExecStart with --check.
# Usage: scripts/test-release-chroot.sh [--binary PATH] [--keep]   (root; debootstrap from Debian's packages)
# DREAMSR_CHROOT_CACHE=DIR keeps the debootstrapped root as a tarball between runs.
set -euo pipefail
cd "$(dirname "$0")/.."
binary="" keep=0
while [ $# -gt 0 ]; do
    case "$1" in
        --binary) binary="$2"; shift 2 ;;
        --keep) keep=1; shift ;;
        *) echo "test-release-chroot: unknown argument '$1'" >&2; exit 64 ;;
    esac
done
[ "$(id -u)" -eq 0 ] || { echo "test-release-chroot: run as root" >&2; exit 1; }
command -v debootstrap >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null
[ -n "$binary" ] || binary="$(bash scripts/build-release.sh | tail -n1)"
bash scripts/fetch-models.sh >&2
bash scripts/fetch-samples.sh >&2
mirror="$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -n1)"
mirror="${mirror:-http://deb.debian.org/debian}"

root="$(mktemp -d /tmp/dreamsr-chroot.XXXXXX)"
cleanup() {
    for m in proc dev; do umount -l "$root/$m" 2>/dev/null || true; done
    if [ $keep -eq 0 ]; then rm -rf "$root"; else echo "test-release-chroot: root kept at $root" >&2; fi
}
trap cleanup EXIT
cache="${DREAMSR_CHROOT_CACHE:-}"
if [ -n "$cache" ] && [ -f "$cache/bookworm-minbase.tar" ]; then
    tar -C "$root" -xf "$cache/bookworm-minbase.tar"
else
    echo "test-release-chroot: debootstrap bookworm (minbase) from $mirror" >&2
    debootstrap --variant=minbase bookworm "$root" "$mirror" >&2
    if [ -n "$cache" ]; then mkdir -p "$cache"; tar -C "$root" -cf "$cache/bookworm-minbase.tar" .; fi
fi
chmod 0755 "$root"   # it becomes /: the service user must be able to enter it (mktemp and tar leave 0700)
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
pkgs="$(grep -v '^#' deploy/runtime-packages.txt | sed '/^$/d' | tr '\n' ' ')"
echo "test-release-chroot: installing $pkgs" >&2
chroot "$root" /usr/bin/env DEBIAN_FRONTEND=noninteractive sh -c "apt-get update -qq && apt-get install -y -qq --no-install-recommends $pkgs" >&2
if chroot "$root" sh -c 'ls /opt/swift /usr/bin/swift* 2>/dev/null'; then echo "test-release-chroot: FAIL: a Swift toolchain is in the root" >&2; exit 1; fi

src="$root/opt/dreamsr-src"
mkdir -p "$src"
cp -r scripts pipelines conf systemd deploy "$src/"
cp "$binary" "$src/dreamsr"
mkdir -p "$src/models" && cp -r models/realesrgan-x4plus "$src/models/"
mkdir -p "$root/work" && cp samples/astronaut.png "$root/work/photo.png"

fail() { echo "test-release-chroot: FAIL: $*" >&2; exit 1; }
v="$(chroot "$root" /opt/dreamsr-src/dreamsr --version)" || fail "--version"
echo "ok 1 - dreamsr --version: $v"
start=$(date +%s)
chroot "$root" sh -c 'cd /opt/dreamsr-src && ./dreamsr upscale /work/photo.png -o /work/photo-x4.png' >&2 || fail "upscale"
dims="$(vipsheader -f width "$root/work/photo-x4.png")x$(vipsheader -f height "$root/work/photo-x4.png")"
[ "$dims" = "2048x2048" ] || fail "output is $dims, expected 2048x2048"
echo "ok 2 - dreamsr upscale astronaut.png (512x512) -> 2048x2048 in $(( $(date +%s) - start )) s"
chroot "$root" /usr/bin/env PATH=/usr/sbin:/usr/bin:/sbin:/bin sh -c \
    'cd /opt/dreamsr-src && bash scripts/install-service.sh --binary ./dreamsr --models ./models --no-start' >&2 || fail "install-service"
unit="$root/etc/systemd/system/dreamsr.service"
envs="$(grep '^Environment=' "$unit" | sed 's/^Environment=//' | tr '\n' ' ')"
exec_start="$(sed -n 's/^ExecStart=//p' "$unit")"
out="$(chroot "$root" /usr/bin/env -i PATH=/usr/bin:/bin $envs setpriv --reuid=dreamsr --regid=dreamsr --init-groups -- sh -c "cd /var/lib/dreamsr && $exec_start --check" 2>&1)" \
    || fail "ExecStart --check: $out"
grep -q "configuration OK" <<<"$out" || fail "ExecStart --check: $out"
echo "ok 3 - installed with scripts/install-service.sh; ExecStart --check as dreamsr: configuration OK"
echo "test-release-chroot: 3 passed, 0 failed"
