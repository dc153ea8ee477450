#!/usr/bin/env python3
"""PyTorch CPU baseline for `dreamsr-bench flux-blocks`: one full-size FLUX double block and one single block
(diffusers FluxTransformerBlock / FluxSingleTransformerBlock, dim 3072, 24 heads, random weights) at the given token
counts. Prints one JSON line: median seconds per block for fp32 (and bf16 unless --no-bf16).

Run by the benchmark with .venv-ref/bin/python (scripts/setup-reference-env.sh) (or --python); needs torch + diffusers.
"""
import argparse
import json

import torch
from diffusers.models.transformers.transformer_flux import (FluxPosEmbed, FluxSingleTransformerBlock,
                                                            FluxTransformerBlock)

from baseline_timing import timed  # Benchmarks/, this script's folder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--img", type=int, default=1024)
    ap.add_argument("--txt", type=int, default=512)
    ap.add_argument("--dim", type=int, default=3072)
    ap.add_argument("--heads", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--no-bf16", action="store_true")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    hd = a.dim // a.heads
    double = FluxTransformerBlock(dim=a.dim, num_attention_heads=a.heads, attention_head_dim=hd).eval()
    single = FluxSingleTransformerBlock(dim=a.dim, num_attention_heads=a.heads, attention_head_dim=hd).eval()
    img = torch.randn(1, a.img, a.dim)
    txt = torch.randn(1, a.txt, a.dim)
    temb = torch.randn(1, a.dim)
    side = int(a.img ** 0.5)
    ids = torch.zeros(a.txt + a.img, 3)
    for i in range(a.img):
        ids[a.txt + i, 1] = i // side
        ids[a.txt + i, 2] = i % side
    axes = [hd // 8, (hd - hd // 8) // 2, hd - hd // 8 - (hd - hd // 8) // 2]
    rope = FluxPosEmbed(theta=10000, axes_dim=axes)(ids)
    out = {"threads": torch.get_num_threads(), "img": a.img, "txt": a.txt, "dim": a.dim, "heads": a.heads,
           "torch": torch.__version__}
    for dtype in ([torch.float32] if a.no_bf16 else [torch.float32, torch.bfloat16]):
        tag = "fp32" if dtype == torch.float32 else "bf16"
        d, s = double.to(dtype), single.to(dtype)
        i, t, e = img.to(dtype), txt.to(dtype), temb.to(dtype)
        r = (rope[0].to(dtype), rope[1].to(dtype)) if dtype != torch.float32 else rope
        with torch.inference_mode():
            out[f"double_{tag}"] = timed(lambda: d(hidden_states=i, encoder_hidden_states=t, temb=e, image_rotary_emb=r), a.repeats)
            out[f"single_{tag}"] = timed(lambda: s(hidden_states=i, encoder_hidden_states=t, temb=e, image_rotary_emb=r), a.repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
