"""Baseline for `dreamsr-bench dreamsr-step`: one DreamSR step (main DiT + ControlNet + context cross-attention,
LoRA off) with the PyTorch reference (tools/dreamsr_reference.py, diffusers FLUX modules), fp32 on CPU.

Writes into --dir: flux.safetensors (diffusers layout), dreamsr.safetensors (our format, no LoRA tensors),
inputs.safetensors (the `dreamsr-step` contract), outputs.safetensors (`sample`), timing.json (seconds per step).
Full FLUX width (3072 = 24 x 128, T5 4096, CLIP 768) with configurable depths (full depth needs ~60 GB fp32).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import dreamsr_reference as R  # noqa: E402
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


def randomize_(module, gen):
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 2:
                p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[1] ** -0.5))
            elif name.endswith("bias"):
                p.copy_(0.02 * torch.randn(p.shape, generator=gen))
            else:
                p.copy_(1 + 0.1 * torch.randn(p.shape, generator=gen))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--double", type=int, default=1)
    ap.add_argument("--single", type=int, default=1)
    ap.add_argument("--depth", type=int, default=1)
    ap.add_argument("--img-tokens", type=int, default=1024)
    ap.add_argument("--txt-tokens", type=int, default=512)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--repeats", type=int, default=2)
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    out = Path(a.dir)
    out.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        flux = FluxTransformer2DModel(num_layers=a.double, num_single_layers=a.single, guidance_embeds=True).eval()
        randomize_(flux, gen)
        cfg = R.DreamSRConfig(controlnet_depth=a.depth)
        cn = R.DreamSRControlNet.from_transformer(flux, a.depth).eval()
        randomize_(cn, gen)
        R.save_flux(out / "flux.safetensors", flux)
        from safetensors.torch import save_file as sf
        sf({f"controlnet.{k}": v.contiguous() for k, v in R._plain_state(cn).items()}, str(out / "dreamsr.safetensors"),
           metadata={"dreamsr_config": cfg.to_json()})
        side = int(round(a.img_tokens ** 0.5)) * 2
        b, t = 1, a.txt_tokens
        inp = dict(hidden_states=torch.randn(b, a.img_tokens, 64, generator=gen),
                   cond_latents=torch.randn(b, a.img_tokens, 64, generator=gen),
                   encoder_hidden_states=torch.randn(b, t, 4096, generator=gen),
                   pooled_projections=torch.randn(b, 768, generator=gen),
                   local_encoder_hidden_states=torch.randn(b, t, 4096, generator=gen),
                   local_pooled_projections=torch.randn(b, 768, generator=gen),
                   timestep=torch.tensor([0.8]), guidance=torch.tensor([3.5]),
                   img_ids=R.image_ids(side, side), txt_ids=torch.zeros(t, 3), local_txt_ids=torch.zeros(t, 3))
        save_file({k: v.contiguous() for k, v in inp.items()}, str(out / "inputs.safetensors"))
        times = []
        sample = None
        for i in range(a.repeats + 1):
            t0 = time.perf_counter()
            sample = R.dreamsr_forward(flux, cn, cfg, **inp)
            dt = time.perf_counter() - t0
            if i > 0:  # first run is warm-up
                times.append(dt)
        save_file({"sample": sample.contiguous()}, str(out / "outputs.safetensors"))
        (out / "timing.json").write_text(json.dumps({"seconds": times, "threads": torch.get_num_threads(),
                                                      "torch": torch.__version__}))
    print(json.dumps({"torch_seconds": times}))


if __name__ == "__main__":
    main()
