#!/usr/bin/env python3
"""PyTorch fp32 CPU baseline for `dreamsr-bench vae-decode`.

Builds the full-size FLUX VAE (diffusers AutoencoderKL, FLUX config) with random weights (seed 0), writes the weights
(diffusers layout, F32) and a random latent to --out, times `decode(z).sample` at --size pixels on the CPU with
--threads threads, writes the decoded sample (for the engine's parity check) and prints one JSON line:
  {"torch_seconds": ..., "size": ..., "threads": ..., "torch": "..."}
Needs torch, diffusers, safetensors (installed with pip if missing).
"""
import argparse
import json
import os
import subprocess
import sys
import time


def ensure(mod, pkg):
    try:
        __import__(mod)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", pkg])


for mod, pkg in [("torch", "torch"), ("diffusers", "diffusers"), ("safetensors", "safetensors")]:
    ensure(mod, pkg)

import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

FLUX = dict(
    in_channels=3, out_channels=3, down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4, block_out_channels=[128, 256, 512, 512], layers_per_block=2,
    act_fn="silu", latent_channels=16, norm_num_groups=32, sample_size=1024, scaling_factor=0.3611,
    shift_factor=0.1159, use_quant_conv=False, use_post_quant_conv=False, mid_block_add_attention=True,
)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--out", required=True)
    ap.add_argument("--skip-run", action="store_true", help="only write weights and latent")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)
    torch.manual_seed(0)
    model = AutoencoderKL(**FLUX).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():  # non-trivial norm affine, like a trained model
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    wpath = os.path.join(a.out, "flux_vae_random.safetensors")
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, wpath)
    with open(os.path.join(a.out, "config.json"), "w") as f:
        json.dump(dict(_class_name="AutoencoderKL", **FLUX), f)
    h = a.size // 8
    z = torch.randn(1, 16, h, h, generator=torch.Generator().manual_seed(1))
    tensors = {"latent": z}
    secs = None
    if not a.skip_run:
        with torch.no_grad():
            model.decode(torch.randn(1, 16, 8, 8))  # warm-up (allocator, oneDNN primitives)
            t0 = time.perf_counter()
            out = model.decode(z).sample
            secs = time.perf_counter() - t0
        tensors["sample"] = out.contiguous()
    save_file(tensors, os.path.join(a.out, "latent.safetensors"))
    print(json.dumps({"torch_seconds": secs, "size": a.size, "threads": torch.get_num_threads(),
                      "torch": torch.__version__, "weights": wpath}), flush=True)


if __name__ == "__main__":
    main()
