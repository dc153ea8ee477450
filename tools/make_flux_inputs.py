#!/usr/bin/env python3
"""Writes random inputs for one FLUX.1-dev transformer forward in the `dreamsr forward flux` names (and
tools/flux_streaming_reference.py's): hidden_states [1, H*W, 64], encoder_hidden_states [1, T, 4096],
pooled_projections [1, 768], timestep [1] (sigma 0.75), guidance [1] (3.5), img_ids [H*W, 3] (row, column grid),
txt_ids [T, 3] (zeros). Normal values, numpy seed --seed.

usage: make_flux_inputs.py OUT.safetensors [--image-tokens 1024] [--text-tokens 512] [--seed 14]
  1024 image tokens = one 512x512 patch (64x64 latent, 2x2 packed); 512 text tokens = FLUX.1-dev's T5 length.
"""
import argparse
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_fixtures import safetensors_bytes  # noqa: E402

import numpy as np  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("out")
    ap.add_argument("--image-tokens", type=int, default=1024)
    ap.add_argument("--text-tokens", type=int, default=512)
    ap.add_argument("--seed", type=int, default=14)
    a = ap.parse_args()
    side = int(math.isqrt(a.image_tokens))
    if side * side != a.image_tokens:
        sys.exit(f"--image-tokens {a.image_tokens} is not a square grid")
    rng = np.random.default_rng(a.seed)
    img_ids = np.zeros((a.image_tokens, 3), np.float32)
    img_ids[:, 1] = np.arange(a.image_tokens) // side
    img_ids[:, 2] = np.arange(a.image_tokens) % side
    t = [("encoder_hidden_states", rng.standard_normal((1, a.text_tokens, 4096)).astype(np.float32)),
         ("guidance", np.array([3.5], np.float32)),
         ("hidden_states", rng.standard_normal((1, a.image_tokens, 64)).astype(np.float32)),
         ("img_ids", img_ids),
         ("pooled_projections", rng.standard_normal((1, 768)).astype(np.float32)),
         ("timestep", np.array([0.75], np.float32)),
         ("txt_ids", np.zeros((a.text_tokens, 3), np.float32))]
    with open(a.out, "wb") as f:
        f.write(safetensors_bytes([(n, "F32", v.shape, v.tobytes()) for n, v in t]))
    print(f"wrote {a.out}: {a.image_tokens} image + {a.text_tokens} text tokens")


if __name__ == "__main__":
    main()
