#!/usr/bin/env bash
# Installs the system packages dreamsr builds against (Debian 12): libvips, librdkafka, libcurl, OpenBLAS, pkg-config, and
# python3 + pip (used only to download model/sample packages from PyPI), python3-venv (moto's venv for the object-storage tests). Idempotent: does nothing when all are there.
set -euo pipefail
pkgs=(libvips-dev libvips-tools librdkafka-dev libcurl4-openssl-dev libopenblas-dev zlib1g-dev pkg-config python3 python3-pip python3-venv unzip)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
    echo "install-deps: all system packages present"
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
