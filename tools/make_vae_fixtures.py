#!/usr/bin/env python3
"""Generates the FLUX-VAE parity fixtures in Tests/Fixtures/vae/ (committed; CI has no torch).

A diffusers AutoencoderKL with the FLUX structure (4 levels, 2 res blocks per encoder level / 3 per decoder level,
16 latent channels, no quant convs, mid-block attention, GroupNorm eps 1e-6, SiLU) but small channels
(16, 32, 32, 32) and 8 groups, random weights (seed 1234). Weights are rounded to float16 values and stored as F16,
so the files stay small while the float32 reference runs on exactly the stored values.

Writes:
  vae_small_config.json          diffusers config of the model
  vae_small_diffusers.safetensors  weights, diffusers key layout (F16)
  vae_small_bfl.safetensors        the same weights, BFL `ae.safetensors` key layout (F16), converted here (spec 3.2)
  vae_small_io.safetensors         F32: encode_sample [1,3,48,64] in [-1,1], encode_latent_mean (raw latent_dist.mean),
                                   decode_latent [2,16,6,8], decode_sample (AutoencoderKL.decode(z).sample)

Run: $DREAMSR_REF_PYTHON (or .venv-ref/bin/python, scripts/setup-reference-env.sh) tools/make_vae_fixtures.py
(installs torch/diffusers/safetensors with pip if missing)
"""
import json
import os
import re
import subprocess
import sys


def ensure(mod, pkg):
    try:
        __import__(mod)
    except ImportError:
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--quiet", pkg])


for mod, pkg in [("torch", "torch"), ("diffusers", "diffusers"), ("safetensors", "safetensors"), ("numpy", "numpy")]:
    ensure(mod, pkg)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from diffusers import AutoencoderKL  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "vae")

CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=["DownEncoderBlock2D"] * 4,
    up_block_types=["UpDecoderBlock2D"] * 4,
    block_out_channels=[16, 32, 32, 32],
    layers_per_block=2,
    act_fn="silu",
    latent_channels=16,
    norm_num_groups=8,
    sample_size=64,
    scaling_factor=0.3611,
    shift_factor=0.1159,
    use_quant_conv=False,
    use_post_quant_conv=False,
    mid_block_add_attention=True,
)


def diffusers_to_bfl(key: str, num_levels: int) -> str:
    """diffusers AutoencoderKL key -> BFL ae.safetensors key (flux-and-tiling-spec 3.2)."""
    k = key
    for part in ("encoder", "decoder"):
        k = re.sub(rf"^{part}\.down_blocks\.(\d+)\.resnets\.(\d+)\.", rf"{part}.down.\1.block.\2.", k)
        k = re.sub(rf"^{part}\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.", rf"{part}.down.\1.downsample.conv.", k)
        k = re.sub(rf"^{part}\.mid_block\.resnets\.0\.", f"{part}.mid.block_1.", k)
        k = re.sub(rf"^{part}\.mid_block\.resnets\.1\.", f"{part}.mid.block_2.", k)
        k = re.sub(rf"^{part}\.mid_block\.attentions\.0\.group_norm\.", f"{part}.mid.attn_1.norm.", k)
        k = re.sub(rf"^{part}\.mid_block\.attentions\.0\.to_q\.", f"{part}.mid.attn_1.q.", k)
        k = re.sub(rf"^{part}\.mid_block\.attentions\.0\.to_k\.", f"{part}.mid.attn_1.k.", k)
        k = re.sub(rf"^{part}\.mid_block\.attentions\.0\.to_v\.", f"{part}.mid.attn_1.v.", k)
        k = re.sub(rf"^{part}\.mid_block\.attentions\.0\.to_out\.0\.", f"{part}.mid.attn_1.proj_out.", k)
        k = re.sub(rf"^{part}\.conv_norm_out\.", f"{part}.norm_out.", k)
    m = re.match(r"^decoder\.up_blocks\.(\d+)\.(resnets|upsamplers)\.(\d+)\.(.*)$", k)
    if m:
        i = num_levels - 1 - int(m.group(1))
        if m.group(2) == "resnets":
            k = f"decoder.up.{i}.block.{m.group(3)}.{m.group(4)}"
        else:
            k = f"decoder.up.{i}.upsample.{m.group(4)}"
    k = k.replace(".conv_shortcut.", ".nin_shortcut.")
    return k


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.manual_seed(1234)
    model = AutoencoderKL(**CONFIG).eval()
    # Random affine GroupNorm parameters (the default 1/0 would not exercise them) and f16-exact weights.
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith(".weight"):
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "norm" in name and name.endswith(".bias"):
                p.copy_(0.2 * torch.randn_like(p))
            elif name.endswith(".bias"):
                p.copy_(0.05 * torch.randn_like(p))
            p.copy_(p.half().float())
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}

    levels = len(CONFIG["block_out_channels"])
    bfl = {}
    for k, v in sd.items():
        nk = diffusers_to_bfl(k, levels)
        if ".mid.attn_1." in nk and nk.endswith(".weight") and v.dim() == 2:
            v = v.reshape(v.shape[0], v.shape[1], 1, 1)  # BFL attention projections are 1x1 convs
        assert nk not in bfl, nk
        bfl[nk] = v
    save_file({k: v.half().contiguous() for k, v in sd.items()}, os.path.join(OUT, "vae_small_diffusers.safetensors"))
    save_file({k: v.half().contiguous() for k, v in bfl.items()}, os.path.join(OUT, "vae_small_bfl.safetensors"))
    with open(os.path.join(OUT, "vae_small_config.json"), "w") as f:
        json.dump(dict(_class_name="AutoencoderKL", **CONFIG), f, indent=2)

    g = torch.Generator().manual_seed(99)
    h, w = 48, 64
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, h), torch.linspace(-1, 1, w), indexing="ij")
    smooth = torch.stack([torch.sin(3 * xx + 1), torch.cos(2 * yy - xx), xx * yy])
    sample = (0.7 * smooth + 0.3 * (2 * torch.rand(3, h, w, generator=g) - 1)).clamp(-1, 1).unsqueeze(0)
    latent = torch.randn(2, 16, 6, 8, generator=g)
    with torch.no_grad():
        mean = model.encode(sample).latent_dist.mean
        dec = model.decode(latent).sample
    save_file(
        {
            "encode_sample": sample.contiguous(),
            "encode_latent_mean": mean.contiguous(),
            "decode_latent": latent.contiguous(),
            "decode_sample": dec.contiguous(),
        },
        os.path.join(OUT, "vae_small_io.safetensors"),
    )
    print("latent_mean range", float(mean.min()), float(mean.max()), "decode range", float(dec.min()), float(dec.max()))
    for f in sorted(os.listdir(OUT)):
        print(f, os.path.getsize(os.path.join(OUT, f)))


if __name__ == "__main__":
    main()
