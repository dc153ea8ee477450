#!/usr/bin/env python3
"""Drift of `dreamsr forward flux` outputs against the first one (issue 14 benchmark 4): for every tensor of the
first file, each further file's relative L2 (||b - a|| / ||a||) and max abs difference, and the first file's max |a|
for scale.

usage: compare_flux_outputs.py REF.safetensors OTHER.safetensors [OTHER ...]

e.g. the bf16-weight output first, then Q8_0 / Q6_K / Q4_K / FP8:
    compare_flux_outputs.py out-bf16.safetensors out-q8_0.safetensors out-q6_k.safetensors out-q4_k.safetensors out-fp8.safetensors

Reads safetensors itself (F32, F16, BF16), so it runs in the pinned venv of make_full_size_flux.py (numpy,
ml_dtypes; no torch). Exit status 1 (with the reason) when a file lacks a tensor of the first, a shape differs, or
a value is not finite; 0 otherwise. It prints numbers only; the bounds are the tests' and BENCHMARKS.md's.
"""
import json
import struct
import sys

import ml_dtypes
import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16}


def load(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        if info["dtype"] not in DTYPES:
            sys.exit(f"{path}: tensor {name} has dtype {info['dtype']}; this script reads {', '.join(DTYPES)}")
        a, b = info["data_offsets"]
        out[name] = np.frombuffer(data[a:b], dtype=DTYPES[info["dtype"]]).astype(np.float64).reshape(info["shape"])
    return out


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__.split("\n\n")[1])
    ref_path, others = argv[0], argv[1:]
    ref = load(ref_path)
    bad = []
    for name, a in ref.items():
        if not np.isfinite(a).all():
            bad.append(f"{ref_path}: {name} has non-finite values")
    print(f"reference {ref_path}: " + ", ".join(f"{n} {list(a.shape)} max|a| {np.abs(a).max():.4g}" for n, a in ref.items()))
    print(f"{'file':<48} {'tensor':<12} {'rel L2':>10} {'max abs':>10}")
    for path in others:
        other = load(path)
        for name, a in ref.items():
            b = other.get(name)
            if b is None:
                bad.append(f"{path}: no tensor {name}")
                continue
            if b.shape != a.shape:
                bad.append(f"{path}: {name} has shape {list(b.shape)}, the reference {list(a.shape)}")
                continue
            if not np.isfinite(b).all():
                bad.append(f"{path}: {name} has non-finite values")
                continue
            norm = np.linalg.norm(a)
            rel = np.linalg.norm(b - a) / norm if norm > 0 else float("inf")
            print(f"{path:<48} {name:<12} {rel:>10.3e} {np.abs(b - a).max():>10.3e}")
    for line in bad:
        print("ERROR " + line)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
