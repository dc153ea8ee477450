#!/usr/bin/env python3
"""Generates the weight-format fixtures in Tests/Fixtures/gguf/ (committed; CI needs no Python).

Pinned: gguf==0.19.0, numpy==2.4.6, ml_dtypes==0.7.0 (installed with pip if missing).

Writes:
  quants.gguf                  GGUF v3, one 2-D tensor per supported ggml type (F32, F16, BF16, Q4_0, Q4_1, Q5_0,
                               Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K) named `t.<TYPE>`, made of random blocks plus
                               edge blocks: fp16 scales 0, -0, negative, subnormal (0x0001, 0x03ff), +-max-finite
                               (0x7bff), 1.0; the K-quants' 6-bit scales / mins all 0 and all 63 (Q6_K's int8 scales
                               -128 and 127, Q2_K's 4-bit ones 0 and 15). One 3-D F32 tensor `norm.3d` [2, 3, 32]
                               checks the ggml -> row-major shape order. Metadata has one key of every GGUF value type,
                               arrays of ints, floats, strings and a nested array, and general.alignment = 64.
  quants-expected.safetensors  float32 `gguf.quants.dequantize` of each tensor (same names, row-major shapes).
  fp8.safetensors              F8_E4M3 `e4m3.all` / F8_E5M2 `e5m2.all` (all 256 bytes, [2, 128]), and a ComfyUI
                               "scaled" layer: `layer.weight` F8_E4M3 [4, 32] with `layer.scale_weight` F32 [] =
                               0.0173, plus the `scaled_fp8` marker tensor (F8_E4M3, shape [0]).
  fp8-expected.safetensors     float32 values: ml_dtypes decoding (checked against the format definitions:
                               e4m3fn max 448 and NaN at 0x7f/0xff, e5m2 inf at 0x7c), times the scale for `layer.weight`.

Run: python3 tools/make_gguf_fixtures.py   (a venv is fine: python3 -m venv /tmp/ggufenv && /tmp/ggufenv/bin/python ...)
"""
import json
import os
import struct
import subprocess
import sys


def ensure(mod, pkg):
    try:
        __import__(mod)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", pkg])


ensure("numpy", "numpy==2.4.6")
ensure("gguf", "gguf==0.19.0")
ensure("ml_dtypes", "ml_dtypes==0.7.0")

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import gguf  # noqa: E402
from gguf import GGMLQuantizationType as T  # noqa: E402
from gguf.constants import GGML_QUANT_SIZES  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "gguf")
rng = np.random.default_rng(20261203)

# Offsets of the fp16 scale fields in a block, and of the 6-bit / int8 scale bytes (ggml-common.h layouts).
FP16_FIELDS = {
    T.Q4_0: [0], T.Q4_1: [0, 2], T.Q5_0: [0], T.Q5_1: [0, 2], T.Q8_0: [0],
    T.Q2_K: [80, 82], T.Q3_K: [108], T.Q4_K: [0, 2], T.Q5_K: [0, 2], T.Q6_K: [208],
}
SCALE_BYTES = {T.Q2_K: (0, 16), T.Q3_K: (96, 12), T.Q4_K: (4, 12), T.Q5_K: (4, 12), T.Q6_K: (192, 16)}
EDGE_HALVES = [0x0000, 0x8000, 0xBC00, 0x0001, 0x03FF, 0x7BFF, 0xFBFF, 0x3C00, 0x8001]


def finite_halves(a):
    """Replaces fp16 inf / NaN bit patterns (exponent 31) by finite ones (keeps sign and mantissa)."""
    a = a.copy()
    bad = (a & 0x7C00) == 0x7C00
    a[bad] &= 0xBFFF  # clear the top exponent bit
    return a


def quant_blocks(qt, n_blocks):
    bs, ts = GGML_QUANT_SIZES[qt]
    raw = rng.integers(0, 256, size=(n_blocks, ts), dtype=np.uint8)
    for off in FP16_FIELDS[qt]:
        h = raw[:, off:off + 2].copy().view(np.uint16).reshape(-1)
        h = finite_halves(h)
        # Random blocks get modest random scales; the edge blocks (first len(EDGE_HALVES)) get the edge values.
        h[len(EDGE_HALVES):] = (rng.standard_normal(n_blocks - len(EDGE_HALVES)) * 0.05).astype(np.float16).view(np.uint16)
        h[:len(EDGE_HALVES)] = EDGE_HALVES
        raw[:, off:off + 2] = h.view(np.uint8).reshape(n_blocks, 2)
    if qt in SCALE_BYTES:
        off, cnt = SCALE_BYTES[qt]
        k = len(EDGE_HALVES)
        if qt == T.Q6_K:
            raw[k, off:off + cnt] = np.array([-128] * 8 + [127] * 8, dtype=np.int8).view(np.uint8)
            raw[k + 1, off:off + cnt] = np.array([127, -128] * 8, dtype=np.int8).view(np.uint8)
        else:
            raw[k, off:off + cnt] = 0xFF     # all 6-bit scales and mins 63 (Q2_K: 15/15; Q3_K: 63 -> +31)
            raw[k + 1, off:off + cnt] = 0x00  # all 0 (Q3_K: -32)
        raw[k + 2, off:off + cnt] = 0xAA     # mixed bit pattern across the packed high bits
    return raw


def safetensors_bytes(tensors):
    """Minimal safetensors writer: tensors = list of (name, dtype string, shape, bytes)."""
    header, off, blobs = {}, 0, []
    for name, dt, shape, data in tensors:
        header[name] = {"dtype": dt, "shape": list(shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    return struct.pack("<Q", len(h)) + h + b"".join(blobs)


def write(path, data):
    with open(path, "wb") as f:
        f.write(data)
    print(f"wrote {path} ({len(data)} bytes)")


def main():
    os.makedirs(OUT, exist_ok=True)
    gpath = os.path.join(OUT, "quants.gguf")
    w = gguf.GGUFWriter(gpath, "dreamsr-test")
    w.data_alignment = 64
    w.add_uint32("general.alignment", 64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 0.15625)
    w.add_uint64("test.u64", 18000000000000000000)
    w.add_int64("test.i64", -9000000000000000000)
    w.add_float64("test.f64", -2.5e-300)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo GGUF")
    w.add_array("test.array.i32", [1, -2, 3])
    w.add_array("test.array.f32", [0.5, -1.25])
    w.add_array("test.array.string", ["a", "", "ünï"])
    w.add_key_value("test.array.nested", [[1, 2], [3]], gguf.GGUFValueType.ARRAY)

    expected = []
    # Plain types: [8, 64].
    vals = rng.standard_normal((8, 64)).astype(np.float32)
    vals[0, :8] = [0.0, -0.0, np.inf, -np.inf, 1e-40, -3.4e38, 6.1e-5, 65504.0]
    w.add_tensor("t.F32", vals)
    expected.append(("t.F32", vals))
    with np.errstate(over="ignore"):
        h = vals.astype(np.float16)  # -3.4e38 becomes -inf on purpose
    h[0, 8] = np.float16(6e-8)     # fp16 subnormal
    h.view(np.uint16)[0, 9] = 0x7E00  # a quiet NaN
    w.add_tensor("t.F16", h)
    expected.append(("t.F16", gguf.quants.dequantize(h.view(np.uint8), T.F16).reshape(8, 64)))
    b = rng.integers(0, 65536, size=(8, 64), dtype=np.uint16)  # every bit pattern kind, NaNs included
    w.add_tensor("t.BF16", b.view(np.uint8), raw_dtype=T.BF16)
    expected.append(("t.BF16", gguf.quants.dequantize(b.view(np.uint8), T.BF16)))

    for qt, cols in [(T.Q4_0, 128), (T.Q4_1, 128), (T.Q5_0, 128), (T.Q5_1, 128), (T.Q8_0, 128),
                     (T.Q2_K, 512), (T.Q3_K, 512), (T.Q4_K, 512), (T.Q5_K, 512), (T.Q6_K, 512)]:
        bs, ts = GGML_QUANT_SIZES[qt]
        rows = 8
        raw = quant_blocks(qt, rows * cols // bs).reshape(rows, cols // bs * ts)
        name = f"t.{qt.name}"
        w.add_tensor(name, raw, raw_dtype=qt)
        deq = gguf.quants.dequantize(raw, qt)
        assert deq.shape == (rows, cols) and deq.dtype == np.float32
        expected.append((name, deq))

    norm = rng.standard_normal((2, 3, 32)).astype(np.float32)
    w.add_tensor("norm.3d", norm)
    expected.append(("norm.3d", norm))

    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    print(f"wrote {gpath} ({os.path.getsize(gpath)} bytes)")

    # Read back with gguf's own reader: the types and shapes we wrote.
    r = gguf.GGUFReader(gpath)
    for t in r.tensors:
        assert t.name in dict((n, 0) for n, _ in expected), t.name
    write(os.path.join(OUT, "quants-expected.safetensors"),
          safetensors_bytes([(n, "F32", a.shape, np.ascontiguousarray(a, dtype=np.float32).tobytes()) for n, a in expected]))

    # FP8.
    allb = np.arange(256, dtype=np.uint8).reshape(2, 128)
    e4 = allb.view(ml_dtypes.float8_e4m3fn).astype(np.float32)
    e5 = allb.view(ml_dtypes.float8_e5m2).astype(np.float32)
    assert e4.reshape(-1)[0x7E] == 448.0 and np.isnan(e4.reshape(-1)[0x7F]) and np.isnan(e4.reshape(-1)[0xFF])
    assert e4.reshape(-1)[0x01] == 2.0 ** -9 and e4.reshape(-1)[0x38] == 1.0
    assert np.isinf(e5.reshape(-1)[0x7C]) and e5.reshape(-1)[0x7B] == 57344.0 and e5.reshape(-1)[0x01] == 2.0 ** -16
    layer = rng.integers(0, 256, size=(4, 32), dtype=np.uint8)
    layer[(layer & 0x7F) == 0x7F] = 0x10  # no NaNs in the scaled layer
    scale = np.float32(0.0173)
    deq_layer = layer.view(ml_dtypes.float8_e4m3fn).astype(np.float32) * scale
    write(os.path.join(OUT, "fp8.safetensors"), safetensors_bytes([
        ("e4m3.all", "F8_E4M3", (2, 128), allb.tobytes()),
        ("e5m2.all", "F8_E5M2", (2, 128), allb.tobytes()),
        ("layer.weight", "F8_E4M3", (4, 32), layer.tobytes()),
        ("layer.scale_weight", "F32", (), np.array(scale, dtype=np.float32).tobytes()),
        ("scaled_fp8", "F8_E4M3", (0,), b""),
    ]))
    write(os.path.join(OUT, "fp8-expected.safetensors"), safetensors_bytes([
        ("e4m3.all", "F32", (2, 128), e4.tobytes()),
        ("e5m2.all", "F32", (2, 128), e5.tobytes()),
        ("layer.weight", "F32", (4, 32), deq_layer.astype(np.float32).tobytes()),
    ]))


if __name__ == "__main__":
    main()
