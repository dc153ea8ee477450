#!/usr/bin/env python3
"""Builds the FLUX ControlNet parity fixtures under Tests/Fixtures/flux_controlnet/ with diffusers as the reference.

Run with the reference environment (torch, diffusers, safetensors, numpy; installs nothing):
    /work/refenv/bin/python tools/make_flux_controlnet_fixtures.py

Tiny random models, all float32 (hidden 32 = 1 head x 32, RoPE axes [4, 14, 14] = FLUX's split of the head dim so
that a config inferred from the tensors is exact; 16 packed latent channels, T5 width 32, pooled 16):
  dev/{config.json, diffusion_pytorch_model.safetensors}      FluxTransformer2DModel, 3 double + 4 single, guidance
  schnell/{config.json, diffusion_pytorch_model.safetensors}  FluxTransformer2DModel, 2 double + 2 single, no guidance
  cn_plain/...     FluxControlNetModel 2 double + 3 single, guidance (on `dev`: residual interval ceil(3/2) = 2 for
                   double blocks, ceil(4/3) = 2 for single blocks, so the last single residual goes unused)
  cn_union/...     FluxControlNetModel 2 double + 3 single, guidance, num_mode 3 (union `controlnet_mode`)
  cn_schnell/...   FluxControlNetModel 1 double + 1 single, no guidance
  forward_{plain,union,multi}_{inputs,outputs}.safetensors
      one FluxTransformer2DModel forward (`dev`, batch 2) with the residuals of FluxControlNetModel /
      FluxMultiControlNetModel injected; inputs under diffusers' argument names (`controlnet_cond` packed latent,
      `controlnet_mode` int64 [B, 1], `conditioning_scale` [1]; several ControlNets: `<name>.0`, `<name>.1`);
      outputs `sample` and the ControlNet residuals `controlnet_block_samples.i` / `controlnet_single_block_samples.i`
  img2img_{dev,schnell}.safetensors
      one full FluxControlNetImg2ImgPipeline denoising loop at the latent level (strength 0.8, 5 steps -> 4 Euler
      steps, FlowMatchEulerDiscreteScheduler with FLUX.1-dev resp. FLUX.1-schnell scheduler config), written exactly
      as the pipeline's loop: scale_noise start, controlnet_keep from control_guidance_start/end, guidance per model.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from diffusers import FlowMatchEulerDiscreteScheduler, FluxControlNetModel, FluxTransformer2DModel
from diffusers.models.controlnets.controlnet_flux import FluxMultiControlNetModel
from diffusers.pipelines.flux.pipeline_flux_controlnet_image_to_image import calculate_shift, retrieve_timesteps

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "flux_controlnet")
COMMON = dict(patch_size=1, in_channels=16, attention_head_dim=32, num_attention_heads=1,
              joint_attention_dim=32, pooled_projection_dim=16, axes_dims_rope=[4, 14, 14])
LT = 8  # text tokens
GRID = 4  # packed grid 4 x 4 = 16 image tokens (latent 4 x 8 x 8)


def randomize(model, seed: int):
    """Random weights everywhere, zero-initialised ControlNet projections included (they would hide every bug)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm_q" in name or "norm_k" in name or "norm_added" in name:
                p.copy_(1.0 + 0.2 * torch.randn_like(p))
            elif "controlnet_mode_embedder" in name:
                p.copy_(torch.randn_like(p))
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


def img_ids() -> torch.Tensor:
    ids = torch.zeros(GRID * GRID, 3)
    for r in range(GRID):
        for c in range(GRID):
            ids[r * GRID + c] = torch.tensor([0.0, float(r), float(c)])
    return ids


def base_inputs(batch: int, seed: int) -> dict:
    g = torch.Generator().manual_seed(seed)
    return {
        "hidden_states": torch.randn(batch, GRID * GRID, COMMON["in_channels"], generator=g),
        "encoder_hidden_states": torch.randn(batch, LT, COMMON["joint_attention_dim"], generator=g),
        "pooled_projections": torch.randn(batch, COMMON["pooled_projection_dim"], generator=g),
        "timestep": torch.tensor([0.73, 0.21][:batch]),
        "guidance": torch.tensor([3.5, 1.25][:batch]),
        "img_ids": img_ids(),
        "txt_ids": torch.zeros(LT, 3),
    }


def cond(batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, GRID * GRID, COMMON["in_channels"], generator=g)


def shared(inp: dict, use_guidance: bool) -> dict:
    return dict(encoder_hidden_states=inp["encoder_hidden_states"], pooled_projections=inp["pooled_projections"],
                timestep=inp["timestep"], img_ids=inp["img_ids"], txt_ids=inp["txt_ids"],
                guidance=inp["guidance"] if use_guidance else None)


def transformer_with(transformer, inp: dict, blocks, singles) -> torch.Tensor:
    return transformer(hidden_states=inp["hidden_states"], controlnet_block_samples=blocks,
                       controlnet_single_block_samples=singles, return_dict=False,
                       **shared(inp, transformer.config.guidance_embeds))[0]


def write_forward(name: str, inputs: dict, sample, blocks, singles):
    save_file({k: v.contiguous() for k, v in inputs.items()}, os.path.join(ROOT, f"forward_{name}_inputs.safetensors"))
    out = {"sample": sample.contiguous()}
    for i, b in enumerate(blocks or []):
        out[f"controlnet_block_samples.{i}"] = b.contiguous()
    for i, s in enumerate(singles or []):
        out[f"controlnet_single_block_samples.{i}"] = s.contiguous()
    save_file(out, os.path.join(ROOT, f"forward_{name}_outputs.safetensors"))


def build_forward(dev, cn_plain, cn_union):
    batch = 2
    # plain ControlNet, scale 0.7
    inp = base_inputs(batch, 21)
    c0 = cond(batch, 22)
    blocks, singles = cn_plain(hidden_states=inp["hidden_states"], controlnet_cond=c0, conditioning_scale=0.7,
                               return_dict=False, **shared(inp, cn_plain.config.guidance_embeds))
    write_forward("plain", {**inp, "controlnet_cond": c0, "conditioning_scale": torch.tensor([0.7])},
                  transformer_with(dev, inp, blocks, singles), blocks, singles)
    # union ControlNet, a different mode per item, scale 1.3
    inp = base_inputs(batch, 31)
    c1 = cond(batch, 32)
    mode = torch.tensor([[2], [0]], dtype=torch.long)
    blocks, singles = cn_union(hidden_states=inp["hidden_states"], controlnet_cond=c1, controlnet_mode=mode,
                               conditioning_scale=1.3, return_dict=False, **shared(inp, cn_union.config.guidance_embeds))
    write_forward("union", {**inp, "controlnet_cond": c1, "controlnet_mode": mode,
                            "conditioning_scale": torch.tensor([1.3])},
                  transformer_with(dev, inp, blocks, singles), blocks, singles)
    # two ControlNets (FluxMultiControlNetModel: residuals summed)
    inp = base_inputs(batch, 41)
    ca, cb = cond(batch, 42), cond(batch, 43)
    multi = FluxMultiControlNetModel([cn_plain, cn_union])
    # the Multi model takes one mode per net, broadcast over the batch (mode[:, None]); -1 for a non-union net
    modes = [torch.tensor([-1] * batch), torch.tensor([1] * batch)]
    # FluxMultiControlNetModel sums the nets' residuals block by block (both nets have the same block counts)
    pa = cn_plain(hidden_states=inp["hidden_states"], controlnet_cond=ca, conditioning_scale=0.6,
                  return_dict=False, **shared(inp, True))
    pb = cn_union(hidden_states=inp["hidden_states"], controlnet_cond=cb, controlnet_mode=modes[1][:, None],
                  conditioning_scale=0.9, return_dict=False, **shared(inp, True))
    mb, ms = multi(hidden_states=inp["hidden_states"], controlnet_cond=[ca, cb], controlnet_mode=modes,
                   conditioning_scale=[0.6, 0.9], return_dict=False, **shared(inp, True))
    for i in range(len(pa[0])):
        assert torch.allclose(mb[i], pa[0][i] + pb[0][i], atol=1e-6)
    for i in range(len(pa[1])):
        assert torch.allclose(ms[i], pa[1][i] + pb[1][i], atol=1e-6)
    write_forward("multi", {**inp, "controlnet_cond.0": ca, "controlnet_cond.1": cb,
                            "controlnet_mode.1": modes[1][:, None],
                            "conditioning_scale.0": torch.tensor([0.6]), "conditioning_scale.1": torch.tensor([0.9])},
                  transformer_with(dev, inp, mb, ms), mb, ms)


def build_img2img(name: str, transformer, controlnet, sched: FlowMatchEulerDiscreteScheduler, guidance_end: float):
    """FluxControlNetImg2ImgPipeline.__call__ from the VAE latents on, batch 1, 64 x 64 pixels (latent 4 x 8 x 8)."""
    steps, strength, guidance_scale, cn_scale = 5, 0.8, 3.5, 0.8
    height = width = 64
    vae_scale_factor = 8
    c = COMMON["in_channels"] // 4
    g = torch.Generator().manual_seed(51)
    image_latent = torch.randn(1, c, 8, 8, generator=g)  # (VAE latent - shift) * scale of the init image
    control_latent = torch.randn(1, c, 8, 8, generator=g)  # same for the control image
    noise = torch.randn(1, c, 8, 8, generator=g)
    prompt = torch.randn(1, LT, COMMON["joint_attention_dim"], generator=g)
    pooled = torch.randn(1, COMMON["pooled_projection_dim"], generator=g)
    text_ids = torch.zeros(LT, 3)

    def pack(x):
        return x.view(1, c, GRID, 2, GRID, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, GRID * GRID, c * 4)

    control_image = pack(control_latent)
    sigmas = np.linspace(1.0, 1 / steps, steps)
    image_seq_len = (height // vae_scale_factor // 2) * (width // vae_scale_factor // 2)
    mu = calculate_shift(image_seq_len, sched.config.get("base_image_seq_len", 256),
                         sched.config.get("max_image_seq_len", 4096), sched.config.get("base_shift", 0.5),
                         sched.config.get("max_shift", 1.15))
    timesteps, n = retrieve_timesteps(sched, steps, "cpu", sigmas=sigmas, mu=mu)
    # get_timesteps(num_inference_steps, strength)
    init_timestep = min(n * strength, n)
    t_start = int(max(n - init_timestep, 0))
    timesteps = sched.timesteps[t_start * sched.order:]
    sched.set_begin_index(t_start * sched.order)
    # prepare_latents: scale_noise then pack
    latents = sched.scale_noise(image_latent, timesteps[:1], noise)
    latents = pack(latents)
    latent_image_ids = img_ids()
    control_guidance_start, control_guidance_end = [0.0], [guidance_end]
    keeps = [1.0 - float(i / len(timesteps) < s or (i + 1) / len(timesteps) > e)
             for i in range(len(timesteps)) for s, e in zip(control_guidance_start, control_guidance_end)]
    with torch.no_grad():
        for i, t in enumerate(timesteps):
            timestep = t.expand(1).to(latents.dtype)
            guidance = torch.tensor([guidance_scale]) if controlnet.config.guidance_embeds else None
            blocks, singles = controlnet(hidden_states=latents, controlnet_cond=control_image, controlnet_mode=None,
                                         conditioning_scale=cn_scale * keeps[i], timestep=timestep / 1000,
                                         guidance=guidance, pooled_projections=pooled, encoder_hidden_states=prompt,
                                         txt_ids=text_ids, img_ids=latent_image_ids, return_dict=False)
            guidance = torch.tensor([guidance_scale]) if transformer.config.guidance_embeds else None
            noise_pred = transformer(hidden_states=latents, timestep=timestep / 1000, guidance=guidance,
                                     pooled_projections=pooled, encoder_hidden_states=prompt,
                                     controlnet_block_samples=blocks, controlnet_single_block_samples=singles,
                                     txt_ids=text_ids, img_ids=latent_image_ids, return_dict=False,
                                     controlnet_blocks_repeat=False)[0]
            latents = sched.step(noise_pred, t, latents, return_dict=False)[0]
    final = latents.view(1, GRID, GRID, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, c, 8, 8)
    save_file({
        "image_latent": image_latent[0].contiguous(), "control_latent": control_latent[0].contiguous(),
        "noise": noise[0].contiguous(), "encoder_hidden_states": prompt.contiguous(),
        "pooled_projections": pooled.contiguous(), "txt_ids": text_ids.contiguous(),
        "img_ids": latent_image_ids.contiguous(),
        "sigmas": sched.sigmas[t_start:].float().contiguous(), "mu": torch.tensor([mu]).float(),
        "settings": torch.tensor([steps, strength, guidance_scale, cn_scale, guidance_end]).float(),
        "final_packed": latents[0].contiguous(), "final_latent": final[0].contiguous(),
    }, os.path.join(ROOT, f"img2img_{name}.safetensors"))


def main():
    torch.set_num_threads(2)
    os.makedirs(ROOT, exist_ok=True)
    dev_cfg = {**COMMON, "out_channels": None, "num_layers": 3, "num_single_layers": 4, "guidance_embeds": True}
    schnell_cfg = {**COMMON, "out_channels": None, "num_layers": 2, "num_single_layers": 2, "guidance_embeds": False}
    plain_cfg = {**COMMON, "num_layers": 2, "num_single_layers": 3, "guidance_embeds": True}
    union_cfg = {**COMMON, "num_layers": 2, "num_single_layers": 3, "guidance_embeds": True, "num_mode": 3}
    cn_schnell_cfg = {**COMMON, "num_layers": 1, "num_single_layers": 1, "guidance_embeds": False}
    dev = randomize(FluxTransformer2DModel(**dev_cfg), 1)
    schnell = randomize(FluxTransformer2DModel(**schnell_cfg), 2)
    cn_plain = randomize(FluxControlNetModel(**plain_cfg), 3)
    cn_union = randomize(FluxControlNetModel(**union_cfg), 4)
    cn_schnell = randomize(FluxControlNetModel(**cn_schnell_cfg), 5)
    for m, n, cls, cfg in ((dev, "dev", "FluxTransformer2DModel", dev_cfg),
                           (schnell, "schnell", "FluxTransformer2DModel", schnell_cfg),
                           (cn_plain, "cn_plain", "FluxControlNetModel", plain_cfg),
                           (cn_union, "cn_union", "FluxControlNetModel", union_cfg),
                           (cn_schnell, "cn_schnell", "FluxControlNetModel", cn_schnell_cfg)):
        save_model(m, n, cls, cfg)
    with torch.no_grad():
        build_forward(dev, cn_plain, cn_union)
    dev_sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                                base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                max_image_seq_len=4096)
    schnell_sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=1.0, use_dynamic_shifting=False,
                                                    base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                                    max_image_seq_len=4096)
    build_img2img("dev", dev, cn_plain, dev_sched, 0.75)
    build_img2img("schnell", schnell, cn_schnell, schnell_sched, 1.0)
    total = 0
    for dp, _, fs in os.walk(ROOT):
        for f in fs:
            total += os.path.getsize(os.path.join(dp, f))
    print(f"fixtures written to {ROOT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
