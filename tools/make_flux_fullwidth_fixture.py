#!/usr/bin/env python3
"""Writes Tests/Fixtures/flux/fullwidth/: inputs and the float32 streaming-reference output of a FULL-WIDTH, shallow
FLUX.1-dev-shaped transformer (width 3072, 24 heads of 128, MLP 12288, 64 latent channels, T5 4096, pooled 768,
guidance embedder; 1 double + 1 single block) with Q8_0 weights, 16 image + 8 text tokens (issue 14, item 3).

The weights (~580 MB as Q8_0 GGUF) are not committed: they are defined by a cheap deterministic generator that the
Swift test (ModelsTests `FluxFullWidthTests`) implements identically and writes into its temp folder:

  mix(z)     = splitmix64's finaliser: z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
               z ^= z >> 31 (uint64, wrapping)
  pool[i]    = int(mix(SEED + (i + 1) * 0x9E3779B97F4A7C15) % 255) - 127, i < POOL = 2^20 (int8 in [-127, 127])
  tensor t   = its index in the sorted list of canonical BFL names; row r of t (a 1-D tensor is one row) takes the
               row-length pool values starting at mix((t << 40) + r) % (POOL - row length)
  2-D weight: ggml Q8_0 blocks, each with half scale d = f16(f32(sqrt(3) * std) / 127) and the row's int8 values, so
               values are uniform with standard deviation `std`: 1/sqrt(in features) for input projections, 0.02/sqrt(57)
               for output projections (attn proj, mlp.2, linear2, final_layer.linear) as in make_full_size_flux.py
  1-D tensor: f32(q) / 127 * f32(sqrt(3) * 0.02) for biases, then + 1 with amplitude sqrt(3) * 0.05 for norm scales
               (float32 operations in that order)

This script writes that GGUF under a temp folder, random inputs (numpy seed 1414), runs tools/flux_streaming_reference.py
on it and stores inputs + output (float32, ~140 KB) as the fixture. Run with the reference python:
    $DREAMSR_REF_PYTHON tools/make_flux_fullwidth_fixture.py
"""
import math
import os
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_fixtures import safetensors_bytes  # noqa: E402

import gguf  # noqa: E402
import numpy as np  # noqa: E402

SEED = 14
POOL = 1 << 20
GAMMA = np.uint64(0x9E3779B97F4A7C15)
D, MLP, HD, IN_CH, CTX, VEC, TDIM = 3072, 12288, 128, 64, 4096, 768, 256
OUT_STD = 0.02 / math.sqrt(57)
IMG_TOKENS, TXT_TOKENS = 16, 8
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "flux", "fullwidth")


def mix(z):
    z = np.asarray(z, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * np.uint64(0xBF58476D1CE4E5B9)
        z = z ^ (z >> np.uint64(27))
        z = z * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return z


def pool():
    i = np.arange(1, POOL + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = mix(np.uint64(SEED) + i * GAMMA)
    return ((z % np.uint64(255)).astype(np.int64) - 127).astype(np.int8)


def tensors():
    """(name, shape, kind) of the canonical tensors: kind 'in' / 'out' (2-D weights), 'bias', 'norm'."""
    out = []

    def lin(n, o, i, kind="in"):
        out.append((n + ".weight", (o, i), kind))
        out.append((n + ".bias", (o,), "bias"))
    lin("img_in", D, IN_CH)
    lin("txt_in", D, CTX)
    for e, i in [("time_in", TDIM), ("guidance_in", TDIM), ("vector_in", VEC)]:
        lin(e + ".in_layer", D, i)
        lin(e + ".out_layer", D, D)
    p = "double_blocks.0."
    for s in ["img", "txt"]:
        lin(p + s + "_mod.lin", 6 * D, D)
        lin(p + s + "_attn.qkv", 3 * D, D)
        out.append((p + s + "_attn.norm.query_norm.scale", (HD,), "norm"))
        out.append((p + s + "_attn.norm.key_norm.scale", (HD,), "norm"))
        lin(p + s + "_attn.proj", D, D, "out")
        lin(p + s + "_mlp.0", MLP, D)
        lin(p + s + "_mlp.2", D, MLP, "out")
    p = "single_blocks.0."
    lin(p + "modulation.lin", 3 * D, D)
    lin(p + "linear1", 3 * D + MLP, D)
    out.append((p + "norm.query_norm.scale", (HD,), "norm"))
    out.append((p + "norm.key_norm.scale", (HD,), "norm"))
    lin(p + "linear2", D, D + MLP, "out")
    lin("final_layer.adaLN_modulation.1", 2 * D, D)
    lin("final_layer.linear", IN_CH, D, "out")
    return sorted(out)


def values(pl, t, shape, kind):
    rows, k = (shape[0], shape[1]) if len(shape) == 2 else (1, shape[0])
    with np.errstate(over="ignore"):
        starts = mix((np.uint64(t) << np.uint64(40)) + np.arange(rows, dtype=np.uint64)) % np.uint64(POOL - k)
    q = pl[starts.astype(np.int64)[:, None] + np.arange(k)[None, :]]               # [rows, k] int8
    if len(shape) == 2:
        std = 1 / math.sqrt(k) if kind == "in" else OUT_STD
        d = np.float16(np.float32(math.sqrt(3) * std) / np.float32(127))
        blocks = np.empty((rows, k // 32, 34), dtype=np.uint8)
        blocks[:, :, 0:2] = np.frombuffer(d.tobytes(), dtype=np.uint8)
        blocks[:, :, 2:] = q.reshape(rows, k // 32, 32).view(np.uint8)
        return blocks.reshape(rows, k // 32 * 34), gguf.GGMLQuantizationType.Q8_0
    amp = np.float32(math.sqrt(3) * (0.02 if kind == "bias" else 0.05))
    v = q.reshape(-1).astype(np.float32) / np.float32(127) * amp
    if kind == "norm":
        v = v + np.float32(1)
    return v.astype(np.float32), gguf.GGMLQuantizationType.F32


def main():
    pl = pool()
    tmp = tempfile.mkdtemp(prefix="flux-fullwidth-")
    path = os.path.join(tmp, "flux-fullwidth-q8_0.gguf")
    w = gguf.GGUFWriter(path, "flux")
    for t, (name, shape, kind) in enumerate(tensors()):
        data, qt = values(pl, t, shape, kind)
        if qt == gguf.GGMLQuantizationType.F32:
            w.add_tensor(name, data)
        else:
            w.add_tensor(name, data, raw_shape=data.shape, raw_dtype=qt)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {path} ({os.path.getsize(path) / 1e6:.0f} MB)", flush=True)

    rng = np.random.default_rng(1414)
    hs = rng.standard_normal((1, IMG_TOKENS, IN_CH)).astype(np.float32)
    ehs = rng.standard_normal((1, TXT_TOKENS, CTX)).astype(np.float32)
    pooled = rng.standard_normal((1, VEC)).astype(np.float32)
    img_ids = np.zeros((IMG_TOKENS, 3), np.float32)
    img_ids[:, 1] = np.arange(IMG_TOKENS) // 4
    img_ids[:, 2] = np.arange(IMG_TOKENS) % 4
    txt_ids = np.zeros((TXT_TOKENS, 3), np.float32)
    inputs = [("encoder_hidden_states", ehs), ("guidance", np.array([3.5], np.float32)), ("hidden_states", hs),
              ("img_ids", img_ids), ("pooled_projections", pooled), ("timestep", np.array([0.75], np.float32)),
              ("txt_ids", txt_ids)]
    os.makedirs(OUT, exist_ok=True)
    inputs_path = os.path.join(OUT, "inputs.safetensors")
    with open(inputs_path, "wb") as f:
        f.write(safetensors_bytes([(n, "F32", a.shape, a.tobytes()) for n, a in inputs]))
    ref = os.path.join(os.path.dirname(os.path.abspath(__file__)), "flux_streaming_reference.py")
    out_path = os.path.join(OUT, "reference.safetensors")
    subprocess.check_call([sys.executable, ref, path, inputs_path, out_path, "--verbose"])
    os.remove(path)
    os.rmdir(tmp)
    print(f"wrote {inputs_path} and {out_path}")


if __name__ == "__main__":
    main()
