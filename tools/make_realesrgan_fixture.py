#!/usr/bin/env python3
"""Generates the Real-ESRGAN x4plus parity fixture (Tests/Fixtures/realesrgan/).

Runs the PyPI `ncnn` wheel on the same .param/.bin the Swift engine loads, in float32 (no fp16 storage, arithmetic
or packing, no Winograd: a clean reference), on a deterministic synthetic 64x64 RGB image, and writes:
  input_u8_3x64x64.bin      uint8 CHW (the image; the model input is value/255)
  output_f32_3x256x256.bin  float32 little-endian CHW (the ncnn output, not clamped)
  meta.json                 shapes, ncnn version, model sha256
Usage: python3 tools/make_realesrgan_fixture.py [MODELS_DIR]   (default ./models; run scripts/fetch-models.sh first)
Needs numpy and ncnn (pip install ncnn numpy).
"""
import hashlib
import json
import os
import sys

import numpy as np

try:
    import ncnn
except ImportError:
    sys.exit("the `ncnn` Python package is missing: python3 -m pip install ncnn")

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
OUT = os.path.join(ROOT, "Tests", "Fixtures", "realesrgan")
SIZE = 64


def synthetic_image(size=SIZE, seed=20261126):
    """Textured, deterministic RGB image: gradients, sinusoidal stripes, a checkerboard, soft disks and noise."""
    rng = np.random.RandomState(seed)
    y, x = np.mgrid[0:size, 0:size].astype(np.float64) / (size - 1)
    r = 0.25 + 0.5 * x + 0.15 * np.sin(2 * np.pi * 5 * y)
    g = 0.3 + 0.4 * y + 0.2 * np.sin(2 * np.pi * (3 * x + 2 * y))
    b = 0.5 + 0.3 * np.cos(2 * np.pi * 4 * x * y)
    img = np.stack([r, g, b])
    checker = ((np.floor(x * 8) + np.floor(y * 8)) % 2)[None] * 0.25
    img[:, size // 2:, : size // 2] += checker[:, size // 2:, : size // 2] - 0.1
    for _ in range(6):
        cx, cy, rad = rng.uniform(0, 1), rng.uniform(0, 1), rng.uniform(0.05, 0.18)
        col = rng.uniform(0, 1, size=3)[:, None, None]
        mask = np.clip(1.0 - (np.hypot(x - cx, y - cy) / rad) ** 4, 0, 1)[None]
        img = img * (1 - mask) + col * mask
    img += rng.normal(0, 0.03, size=img.shape)
    return np.clip(np.round(img * 255), 0, 255).astype(np.uint8)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def main():
    models = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("DREAMSR_MODELS_DIR", os.path.join(ROOT, "models"))
    base = os.path.join(models, "realesrgan-x4plus", "REALESRGAN_X4PLUS_UP4X")
    if not os.path.exists(base + ".param"):
        sys.exit(f"{base}.param not found: run scripts/fetch-models.sh first")
    img = synthetic_image()
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    net.opt.use_fp16_storage = False
    net.opt.use_fp16_arithmetic = False
    net.opt.use_fp16_packed = False
    net.opt.use_bf16_storage = False
    net.opt.use_packing_layout = False
    net.opt.use_winograd_convolution = False
    net.load_param(base + ".param")
    net.load_model(base + ".bin")
    x = np.ascontiguousarray(img.astype(np.float32) / 255.0)  # keep a reference: ncnn.Mat does not copy
    mat = ncnn.Mat(x)
    ex = net.create_extractor()
    ex.input("data", mat)
    ret, out = ex.extract("output")
    if ret != 0:
        sys.exit(f"ncnn extract failed ({ret})")
    y = np.array(out, dtype=np.float32).copy()
    assert y.shape == (3, SIZE * 4, SIZE * 4), y.shape
    os.makedirs(OUT, exist_ok=True)
    img.tofile(os.path.join(OUT, "input_u8_3x64x64.bin"))
    y.astype("<f4").tofile(os.path.join(OUT, "output_f32_3x256x256.bin"))
    meta = {
        "generator": "tools/make_realesrgan_fixture.py",
        "ncnn_version": getattr(ncnn, "__version__", "unknown"),
        "options": "fp32, no packing, no winograd, 2 threads",
        "model_param_sha256": sha256(base + ".param"),
        "model_bin_sha256": sha256(base + ".bin"),
        "input": {"file": "input_u8_3x64x64.bin", "dtype": "uint8", "shape": [3, SIZE, SIZE], "scale": "1/255"},
        "output": {"file": "output_f32_3x256x256.bin", "dtype": "float32-le", "shape": [3, SIZE * 4, SIZE * 4]},
        "output_range": [float(y.min()), float(y.max())],
    }
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
        f.write("\n")
    print(f"wrote {OUT}: output range {y.min():.4f}..{y.max():.4f}")


if __name__ == "__main__":
    main()
