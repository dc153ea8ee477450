#!/usr/bin/env python3
"""Fixtures and the image-level reference of the FLUX ControlNet upscale pipeline (issue 18, texture stage).

Run with the reference environment (torch, diffusers, safetensors, numpy; installs nothing):
    /work/refenv/bin/python tools/make_flux_controlnet_upscale_fixtures.py

Writes under Tests/Fixtures/flux_controlnet/ (float32):
  cn_pipeline/{config.json, diffusion_pytorch_model.safetensors}
      a tiny FluxControlNetModel (1 double + 1 single block, guidance embedder) that fits the tiny FLUX transformer
      of Tests/Fixtures/dreamsr/flux-tiny.safetensors (64 packed channels = the VAE fixture's 16 latent channels,
      hidden 64, T5 width 32, pooled 16): the pipeline tests' ControlNet
  schnell_pipeline/{config.json, diffusion_pytorch_model.safetensors}
      a tiny FLUX.1-schnell-style FluxTransformer2DModel (no guidance embedder) of the same widths
  upscale_image_{dev,schnell}.safetensors
      the image-level reference: a 192 x 192 RGB image at scale 1 (no resize), VAE-encoded untiled with the VAE fixture
      (z = sf (mean - shift)) as both the control and the start latent, noised to sigma 0.8 with the pipeline's
      seeded noise (SplitMix64 + Box-Muller, re-implemented here), 2 Euler steps (dev: DreamSR's shifted schedule
      with the patch's mu; schnell: linear), each step the MultiDiffusion blend (Gaussian weights) of 2 x 2 patches
      of 16 latent cells (overlap 4), per patch diffusers' FluxControlNetImg2ImgPipeline transformer call:
      FluxControlNetModel on the patch's local prompt and control latent, its residuals injected into the
      transformer on the global prompt; decoded untiled, cropped, [0, 1], clamped (colour fix none).
      Keys: image [3,H,W], global_states [T,32], global_pooled [16], local_states.i, local_pooled.i, noise [16,h,w],
      z_control, z_out [16,h,w], out_image [3,H,W].
"""
import json
import math
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from diffusers import AutoencoderKL, FluxControlNetModel, FluxTransformer2DModel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import dreamsr_reference as R  # noqa: E402

FX = os.path.join(HERE, "..", "Tests", "Fixtures")
ROOT = os.path.join(FX, "flux_controlnet")
WIDTHS = dict(patch_size=1, in_channels=64, attention_head_dim=16, num_attention_heads=4, joint_attention_dim=32,
              pooled_projection_dim=16, axes_dims_rope=[4, 6, 6])
TINY_FLUX = dict(WIDTHS, num_layers=2, num_single_layers=2, guidance_embeds=True)
CN = dict(WIDTHS, num_layers=1, num_single_layers=1, guidance_embeds=True)
SCHNELL = dict(WIDTHS, num_layers=2, num_single_layers=2, guidance_embeds=False)
SIZE = 192  # pixels, scale 1
PATCH, OVERLAP = 16, 4  # latent cells (128 / 32 px)
STEPS, START, GUIDANCE, SEED, T = 2, 0.8, 3.5, 7, 8


def randomize(model, seed: int):
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm_q" in name or "norm_k" in name or "norm_added" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            else:
                fan_in = p.shape[-1] if p.ndim == 2 else 16
                p.copy_(torch.randn_like(p) * (0.8 / fan_in ** 0.5))
    return model.eval()


def save_model(model, name: str, class_name: str, cfg: dict):
    out = os.path.join(ROOT, name)
    os.makedirs(out, exist_ok=True)
    save_file({k: v.detach().float().contiguous() for k, v in model.state_dict().items()},
              os.path.join(out, "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(out, "config.json"), "w") as f:
        json.dump({"_class_name": class_name, **cfg}, f, indent=1)


def seeded_noise(shape, seed: int) -> torch.Tensor:
    """DreamSRNoise.gaussian: SplitMix64 (state starts at seed + golden gamma) + Box-Muller in double."""
    m = (1 << 64) - 1
    gamma = 0x9E3779B97F4A7C15
    state = (seed + gamma) & m

    def nxt():
        nonlocal state
        state = (state + gamma) & m
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & m
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & m
        return z ^ (z >> 31)

    def uniform():
        return ((nxt() >> 11) + 0.5) / float(1 << 53)

    n = math.prod(shape)
    out = [0.0] * n
    i = 0
    while i < n:
        r = math.sqrt(-2 * math.log(uniform()))
        a = 2 * math.pi * uniform()
        out[i] = r * math.cos(a)
        if i + 1 < n:
            out[i + 1] = r * math.sin(a)
        i += 2
    return torch.tensor(out, dtype=torch.float64).float().reshape(shape)


def flow_mu(tokens: int) -> float:
    m = (1.15 - 0.5) / (4096 - 256)
    return tokens * m + (0.5 - m * 256)


def sigmas(variant: str, tokens: int) -> list:
    if variant == "schnell":
        return [float(torch.tensor(START * (1 - k / STEPS), dtype=torch.float32)) for k in range(STEPS + 1)]
    mu = flow_mu(tokens)
    u0 = R.inverse_time_shift(mu, START)
    return [float(torch.tensor(R.time_shift(mu, u0 * (1 - k / STEPS)), dtype=torch.float32)) for k in range(STEPS + 1)]


def test_image() -> torch.Tensor:
    y, x = torch.meshgrid(torch.arange(SIZE, dtype=torch.float32), torch.arange(SIZE, dtype=torch.float32), indexing="ij")
    r = x / SIZE
    g = y / SIZE
    b = torch.where(((x // 24 + y // 24) % 2) == 0, torch.tensor(0.8), torch.tensor(0.2))
    return torch.stack([r, g, b])


@torch.no_grad()
def reference(variant, flux, cn, vae):
    img = test_image()
    sf, sh = vae.config.scaling_factor, vae.config.shift_factor
    raw = vae.encode((img * 2 - 1)[None]).latent_dist.mean[0]
    z = sf * (raw - sh)
    c, h, w = z.shape
    gen = torch.Generator().manual_seed(99)
    gstates = torch.randn(T, 32, generator=gen)
    gpooled = torch.randn(16, generator=gen)
    ys, xs = R.patch_positions(h, PATCH, OVERLAP), R.patch_positions(w, PATCH, OVERLAP)
    patches = [(y, x) for y in ys for x in xs]
    assert len(patches) == 4, patches
    lstates = [torch.randn(T, 32, generator=gen) for _ in patches]
    lpooled = [torch.randn(16, generator=gen) for _ in patches]
    noise = seeded_noise((c, h, w), SEED)
    prof = R.patch_weight_profile("gaussian", PATCH)
    wmap = (prof[:, None] * prof[None, :]).float()
    wsum = torch.zeros(h, w)
    for (y, x) in patches:
        wsum[y:y + PATCH, x:x + PATCH] += wmap
    ids = R.image_ids(PATCH, PATCH)
    txt_ids = torch.zeros(T, 3)
    cond = [R.pack(z[None, :, y:y + PATCH, x:x + PATCH]) for (y, x) in patches]
    sig = sigmas(variant, (PATCH // 2) ** 2)
    guidance = torch.tensor([GUIDANCE])
    lat = (1 - sig[0]) * z + sig[0] * noise
    for k in range(STEPS):
        acc = torch.zeros(c, h, w)
        for i, (y, x) in enumerate(patches):
            tok = R.pack(lat[None, :, y:y + PATCH, x:x + PATCH])
            t = torch.tensor([sig[k]])
            blocks, singles = cn(hidden_states=tok, controlnet_cond=cond[i], conditioning_scale=1.0,
                                 encoder_hidden_states=lstates[i][None], pooled_projections=lpooled[i][None], timestep=t,
                                 img_ids=ids, txt_ids=txt_ids, guidance=guidance, return_dict=False)
            v = flux(hidden_states=tok, encoder_hidden_states=gstates[None], pooled_projections=gpooled[None], timestep=t,
                     img_ids=ids, txt_ids=txt_ids, guidance=guidance if flux.config.guidance_embeds else None,
                     controlnet_block_samples=blocks, controlnet_single_block_samples=singles, return_dict=False)[0]
            acc[:, y:y + PATCH, x:x + PATCH] += R.unpack(v, PATCH, PATCH)[0] * wmap
        lat = lat + (sig[k + 1] - sig[k]) * (acc / wsum)
    px = vae.decode((lat / sf + sh)[None]).sample[0]
    out = ((px[:, :SIZE, :SIZE] + 1) / 2).clamp(0, 1)
    d = {"image": img, "global_states": gstates, "global_pooled": gpooled, "noise": noise, "z_control": z, "z_out": lat,
         "out_image": out, "sigmas": torch.tensor(sig)}
    for i in range(len(patches)):
        d[f"local_states.{i}"] = lstates[i]
        d[f"local_pooled.{i}"] = lpooled[i]
    save_file({k: v.float().contiguous() for k, v in d.items()}, os.path.join(ROOT, f"upscale_image_{variant}.safetensors"))
    print(variant, "sigmas", sig, "out range", float(out.min()), float(out.max()))


def main():
    torch.set_grad_enabled(False)
    cn = randomize(FluxControlNetModel(**CN), 301)
    save_model(cn, "cn_pipeline", "FluxControlNetModel", CN)
    schnell = randomize(FluxTransformer2DModel(**SCHNELL), 302)
    save_model(schnell, "schnell_pipeline", "FluxTransformer2DModel", SCHNELL)
    dev = FluxTransformer2DModel(**TINY_FLUX).eval()
    dev.load_state_dict({k: v.float() for k, v in load_file(os.path.join(FX, "dreamsr", "flux-tiny.safetensors")).items()})
    with open(os.path.join(FX, "vae", "vae_small_config.json")) as f:
        vcfg = {k: v for k, v in json.load(f).items() if not k.startswith("_")}
    vae = AutoencoderKL(**vcfg).eval()
    vae.load_state_dict({k: v.float() for k, v in load_file(os.path.join(FX, "vae", "vae_small_diffusers.safetensors")).items()})
    reference("dev", dev, cn, vae)
    reference("schnell", schnell, cn, vae)


if __name__ == "__main__":
    main()
