#!/usr/bin/env python3
"""Writes the quantized-FLUX fixtures in Tests/Fixtures/flux/gguf/ (committed; CI needs no Python).

Pinned: gguf==0.19.0, numpy==2.4.6, ml_dtypes==0.7.0 (installed with pip if missing, as tools/make_gguf_fixtures.py).

Source weights: the tiny FLUX of Tests/Fixtures/flux/guidance/flux-bfl.safetensors (2 double + 2 single blocks, width
64, 2 heads of 32, guidance embedder; BFL names, F16), so the committed inputs guidance/inputs_b{1,2}.safetensors
fit. Each file below is the same model as a common converter writes it:

  flux-q8_0.gguf                 GGUF v3 as stable-diffusion.cpp / ComfyUI-GGUF write FLUX: names prefixed with
                                 `model.diffusion_model.`, 2-D weights whose rows are whole Q8_0 blocks (32 values)
                                 quantized with gguf.quants.quantize (Q8_0), the others (img_in, vector_in: rows of
                                 16) F16, 1-D tensors (biases, norm scales) F32.
  flux-q8_0-dequantized.safetensors
                                 float32 `gguf.quants.dequantize` of every tensor of flux-q8_0.gguf, BFL names without
                                 prefix: the float32 model the GGUF stands for.
  flux-fp8-scaled.safetensors    ComfyUI "scaled FP8": prefix `model.diffusion_model.`, every 2-D weight F8_E4M3 with a
                                 per-tensor F32 `scale_weight` = max|w| / 448 (values stored as w / scale), the qkv
                                 weights also with a `scale_input` (1.0), biases BF16, norm scales F32, and the
                                 `scaled_fp8` marker (F8_E4M3, shape [0]).
  flux-fp8-scaled-dequantized.safetensors
                                 float32 values of flux-fp8-scaled.safetensors (ml_dtypes decoding times the scale;
                                 BF16 biases widened), BFL names without prefix.

Run: python3 tools/make_flux_gguf_fixtures.py   (a venv is fine: python3 -m venv /tmp/v && /tmp/v/bin/python ...)
"""
import json
import os
import struct
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_fixtures import safetensors_bytes, write  # noqa: E402  (also installs the pinned packages)

import gguf  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "flux")
SOURCE = os.path.join(ROOT, "guidance", "flux-bfl.safetensors")
OUT = os.path.join(ROOT, "gguf")
PREFIX = "model.diffusion_model."
ST_DTYPES = {"F16": np.float16, "F32": np.float32, "BF16": ml_dtypes.bfloat16}


def read_safetensors(path):
    """name -> float32 array (row-major shape), in file order."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    out = {}
    for name, e in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0] if kv[0] != "__metadata__" else -1):
        if name == "__metadata__":
            continue
        b, end = e["data_offsets"]
        a = np.frombuffer(raw[8 + n + b:8 + n + end], dtype=ST_DTYPES[e["dtype"]]).reshape(e["shape"])
        out[name] = a.astype(np.float32)
    return out


def f32_bytes(a):
    return np.ascontiguousarray(a, dtype=np.float32).tobytes()


def write_q8_0(weights):
    path = os.path.join(OUT, "flux-q8_0.gguf")
    w = gguf.GGUFWriter(path, "flux")
    deq = []
    for name, a in weights.items():
        if a.ndim == 2 and a.shape[1] % 32 == 0:
            q = gguf.quants.quantize(a, T.Q8_0)
            w.add_tensor(PREFIX + name, q, raw_dtype=T.Q8_0)
            d = gguf.quants.dequantize(q, T.Q8_0)
        elif a.ndim == 2:
            h = a.astype(np.float16)
            w.add_tensor(PREFIX + name, h)
            d = h.astype(np.float32)
        else:
            w.add_tensor(PREFIX + name, a.astype(np.float32))
            d = a.astype(np.float32)
        assert d.shape == a.shape, (name, d.shape, a.shape)
        deq.append((name, "F32", d.shape, f32_bytes(d)))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")
    write(os.path.join(OUT, "flux-q8_0-dequantized.safetensors"), safetensors_bytes(deq))


def write_fp8_scaled(weights):
    stored, deq = [], []
    for name, a in weights.items():
        if a.ndim == 2:
            scale = np.float32(np.abs(a).max() / 448.0)
            q = (a / scale).astype(ml_dtypes.float8_e4m3fn)
            stored.append((PREFIX + name, "F8_E4M3", a.shape, q.tobytes()))
            stem = PREFIX + name[:-len("weight")]
            stored.append((stem + "scale_weight", "F32", (), f32_bytes(scale)))
            if ".qkv." in name:
                stored.append((stem + "scale_input", "F32", (), f32_bytes(np.float32(1))))
            d = q.astype(np.float32) * scale
        elif name.endswith(".bias"):
            b = a.astype(ml_dtypes.bfloat16)
            stored.append((PREFIX + name, "BF16", a.shape, b.tobytes()))
            d = b.astype(np.float32)
        else:
            stored.append((PREFIX + name, "F32", a.shape, f32_bytes(a)))
            d = a
        deq.append((name, "F32", d.shape, f32_bytes(d)))
    stored.append((PREFIX + "scaled_fp8", "F8_E4M3", (0,), b""))
    write(os.path.join(OUT, "flux-fp8-scaled.safetensors"), safetensors_bytes(stored))
    write(os.path.join(OUT, "flux-fp8-scaled-dequantized.safetensors"), safetensors_bytes(deq))


def main():
    os.makedirs(OUT, exist_ok=True)
    weights = read_safetensors(SOURCE)
    write_q8_0(weights)
    write_fp8_scaled(weights)


if __name__ == "__main__":
    main()
