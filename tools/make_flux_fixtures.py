#!/usr/bin/env python3
"""Builds the FLUX transformer parity fixtures under Tests/Fixtures/flux/ with diffusers as the reference.

Run with the reference environment:  .venv-ref/bin/python (scripts/setup-reference-env.sh) tools/make_flux_fixtures.py
(needs torch, diffusers, safetensors, numpy; installs nothing else).

Outputs (all small):
  guidance/diffusers/{config.json, diffusion_pytorch_model.safetensors}  2 double + 2 single blocks, guidance embed, BF16
  guidance/flux-bfl.safetensors                                          same weights, BFL layout (fused qkv / linear1,
                                                                         final-layer halves swapped), F16
  plain/...                                                              1 double + 1 single block, no guidance embed
  {guidance,plain}/inputs_b{1,2}.safetensors, outputs_b{1,2}.safetensors (diffusers argument names; output `sample`)
  guidance/lora-peft.safetensors, guidance/lora_outputs_b2.safetensors   rank-4 LoRA on every Linear + merged reference
  sampling.safetensors                                                   4-step FlowMatchEuler loop on the guidance model
  flux1-dev-keys.json                                                    real FLUX.1-dev key names + shapes, both layouts

Weights are rounded to values exactly representable in both bf16 and f16, so the BF16 and F16 files hold identical
numbers and one reference output serves both layouts.
"""
import json
import os
import sys

import numpy as np
import torch
from safetensors.torch import save_file
from diffusers import FluxTransformer2DModel, FlowMatchEulerDiscreteScheduler

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "Tests", "Fixtures", "flux")


def representable(t: torch.Tensor) -> torch.Tensor:
    """Round to bf16, flush values too small for f16 normals to zero: exact in bf16, f16 and f32."""
    t = t.to(torch.bfloat16).to(torch.float32)
    t = torch.where(t.abs() < 2.0 ** -13, torch.zeros_like(t), t)
    return t.clamp(-60000, 60000)


def diffusers_to_bfl(sd: dict, num_layers: int, num_single: int) -> dict:
    """Our own diffusers -> BFL conversion (inverse of diffusers' convert_flux_to_diffusers.py)."""
    out = {}
    sd = dict(sd)

    def take(k):
        return sd.pop(k)

    for wb in ("weight", "bias"):
        out[f"img_in.{wb}"] = take(f"x_embedder.{wb}")
        out[f"txt_in.{wb}"] = take(f"context_embedder.{wb}")
        out[f"time_in.in_layer.{wb}"] = take(f"time_text_embed.timestep_embedder.linear_1.{wb}")
        out[f"time_in.out_layer.{wb}"] = take(f"time_text_embed.timestep_embedder.linear_2.{wb}")
        if f"time_text_embed.guidance_embedder.linear_1.{wb}" in sd:
            out[f"guidance_in.in_layer.{wb}"] = take(f"time_text_embed.guidance_embedder.linear_1.{wb}")
            out[f"guidance_in.out_layer.{wb}"] = take(f"time_text_embed.guidance_embedder.linear_2.{wb}")
        out[f"vector_in.in_layer.{wb}"] = take(f"time_text_embed.text_embedder.linear_1.{wb}")
        out[f"vector_in.out_layer.{wb}"] = take(f"time_text_embed.text_embedder.linear_2.{wb}")
    for i in range(num_layers):
        s, d = f"transformer_blocks.{i}.", f"double_blocks.{i}."
        for wb in ("weight", "bias"):
            out[d + f"img_mod.lin.{wb}"] = take(s + f"norm1.linear.{wb}")
            out[d + f"txt_mod.lin.{wb}"] = take(s + f"norm1_context.linear.{wb}")
            out[d + f"img_attn.qkv.{wb}"] = torch.cat([take(s + f"attn.to_{x}.{wb}") for x in "qkv"], 0)
            out[d + f"txt_attn.qkv.{wb}"] = torch.cat([take(s + f"attn.add_{x}_proj.{wb}") for x in "qkv"], 0)
            out[d + f"img_attn.proj.{wb}"] = take(s + f"attn.to_out.0.{wb}")
            out[d + f"txt_attn.proj.{wb}"] = take(s + f"attn.to_add_out.{wb}")
            out[d + f"img_mlp.0.{wb}"] = take(s + f"ff.net.0.proj.{wb}")
            out[d + f"img_mlp.2.{wb}"] = take(s + f"ff.net.2.{wb}")
            out[d + f"txt_mlp.0.{wb}"] = take(s + f"ff_context.net.0.proj.{wb}")
            out[d + f"txt_mlp.2.{wb}"] = take(s + f"ff_context.net.2.{wb}")
        out[d + "img_attn.norm.query_norm.scale"] = take(s + "attn.norm_q.weight")
        out[d + "img_attn.norm.key_norm.scale"] = take(s + "attn.norm_k.weight")
        out[d + "txt_attn.norm.query_norm.scale"] = take(s + "attn.norm_added_q.weight")
        out[d + "txt_attn.norm.key_norm.scale"] = take(s + "attn.norm_added_k.weight")
    for i in range(num_single):
        s, d = f"single_transformer_blocks.{i}.", f"single_blocks.{i}."
        for wb in ("weight", "bias"):
            out[d + f"modulation.lin.{wb}"] = take(s + f"norm.linear.{wb}")
            out[d + f"linear1.{wb}"] = torch.cat(
                [take(s + f"attn.to_{x}.{wb}") for x in "qkv"] + [take(s + f"proj_mlp.{wb}")], 0)
            out[d + f"linear2.{wb}"] = take(s + f"proj_out.{wb}")
        out[d + "norm.query_norm.scale"] = take(s + "attn.norm_q.weight")
        out[d + "norm.key_norm.scale"] = take(s + "attn.norm_k.weight")
    for wb in ("weight", "bias"):
        scale, shift = take(f"norm_out.linear.{wb}").chunk(2, 0)
        out[f"final_layer.adaLN_modulation.1.{wb}"] = torch.cat([shift, scale], 0)
        out[f"final_layer.linear.{wb}"] = take(f"proj_out.{wb}")
    if sd:
        raise SystemExit(f"unconverted keys: {sorted(sd)}")
    return out


def make_model(cfg: dict, seed: int) -> FluxTransformer2DModel:
    torch.manual_seed(seed)
    model = FluxTransformer2DModel(**cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm_q.weight") or name.endswith("norm_k.weight") or "norm_added" in name:
                p.copy_(representable(1.0 + 0.2 * torch.randn_like(p)))
            else:
                fan_in = p.shape[-1] if p.ndim == 2 else 16
                p.copy_(representable(torch.randn_like(p) * (0.8 / fan_in ** 0.5)))
    return model


def inputs_for(cfg: dict, batch: int, seed: int, guidance: bool) -> dict:
    g = torch.Generator().manual_seed(seed)
    h = w = 4  # packed grid 4 x 4 = 16 image tokens
    lt = 8
    img_ids = torch.zeros(h * w, 3)
    for r in range(h):
        for c in range(w):
            img_ids[r * w + c] = torch.tensor([0.0, r + 1.0, c + 2.0])
    d = {
        "hidden_states": torch.randn(batch, h * w, cfg["in_channels"], generator=g),
        "encoder_hidden_states": torch.randn(batch, lt, cfg["joint_attention_dim"], generator=g),
        "pooled_projections": torch.randn(batch, cfg["pooled_projection_dim"], generator=g),
        "timestep": torch.tensor([0.73, 0.21][:batch]),
        "img_ids": img_ids,
        "txt_ids": torch.zeros(lt, 3),
    }
    if guidance:
        d["guidance"] = torch.tensor([3.5, 1.25][:batch])
    return d


def run(model, inp: dict) -> torch.Tensor:
    with torch.no_grad():
        return model(**inp, return_dict=False)[0]


def build_variant(name: str, cfg: dict, seed: int):
    out_dir = os.path.join(ROOT, name)
    os.makedirs(os.path.join(out_dir, "diffusers"), exist_ok=True)
    model = make_model(cfg, seed)
    sd = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    save_file({k: v.to(torch.bfloat16) for k, v in sd.items()},
              os.path.join(out_dir, "diffusers", "diffusion_pytorch_model.safetensors"))
    with open(os.path.join(out_dir, "diffusers", "config.json"), "w") as f:
        json.dump({"_class_name": "FluxTransformer2DModel", **cfg}, f, indent=1)
    bfl = diffusers_to_bfl(sd, cfg["num_layers"], cfg["num_single_layers"])
    save_file({k: v.to(torch.float16).contiguous() for k, v in bfl.items()}, os.path.join(out_dir, "flux-bfl.safetensors"))
    # the f16 file must hold exactly the same numbers
    for k, v in bfl.items():
        assert torch.equal(v.to(torch.float16).to(torch.float32), v), k
    for batch in (1, 2):
        inp = inputs_for(cfg, batch, seed + batch, cfg["guidance_embeds"])
        out = run(model, inp)
        save_file({k: v.contiguous() for k, v in inp.items()}, os.path.join(out_dir, f"inputs_b{batch}.safetensors"))
        save_file({"sample": out.contiguous()}, os.path.join(out_dir, f"outputs_b{batch}.safetensors"))
    return model


def build_sampling(model, cfg: dict):
    """4 Euler steps with diffusers' scheduler, FLUX.1-dev scheduler config, dynamic shift from the token count."""
    sched = FlowMatchEulerDiscreteScheduler(num_train_timesteps=1000, shift=3.0, use_dynamic_shifting=True,
                                            base_shift=0.5, max_shift=1.15, base_image_seq_len=256,
                                            max_image_seq_len=4096)
    g = torch.Generator().manual_seed(7)
    c = cfg["in_channels"] // 4
    lat = torch.randn(1, c, 8, 8, generator=g)  # latent [C, 8, 8] -> 16 packed tokens
    packed = lat.view(1, c, 4, 2, 4, 2).permute(0, 2, 4, 1, 3, 5).reshape(1, 16, c * 4)
    steps = 4
    seq_len = packed.shape[1]
    mu = (1.15 - 0.5) / (4096 - 256) * seq_len + (0.5 - (1.15 - 0.5) / (4096 - 256) * 256)
    sched.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), mu=mu)
    inp = inputs_for(cfg, 1, 99, True)
    img_ids = torch.zeros(16, 3)
    for r in range(4):
        for col in range(4):
            img_ids[r * 4 + col] = torch.tensor([0.0, r, col])
    x = packed.clone()
    for t in sched.timesteps:
        v = run(model, {**inp, "hidden_states": x, "img_ids": img_ids, "timestep": (t / 1000).reshape(1)})
        x = sched.step(v, t, x, return_dict=False)[0]
    final = x.view(1, 4, 4, c, 2, 2).permute(0, 3, 1, 4, 2, 5).reshape(1, c, 8, 8)
    save_file({
        "initial_latent": lat[0].contiguous(), "final_packed": x[0].contiguous(), "final_latent": final[0].contiguous(),
        "sigmas": sched.sigmas.float().contiguous(), "mu": torch.tensor([mu], dtype=torch.float64).float(),
        "encoder_hidden_states": inp["encoder_hidden_states"].contiguous(),
        "pooled_projections": inp["pooled_projections"].contiguous(), "guidance": inp["guidance"].contiguous(),
        "txt_ids": inp["txt_ids"].contiguous(), "img_ids": img_ids.contiguous(),
    }, os.path.join(ROOT, "sampling.safetensors"))
    # reference values of the schedules at FLUX sizes, for the Swift scheduler tests
    ref = {}
    for n, seq in ((28, 4096), (20, 1024), (4, 16)):
        m = (1.15 - 0.5) / (4096 - 256) * seq + (0.5 - (1.15 - 0.5) / (4096 - 256) * 256)
        sched.set_timesteps(sigmas=np.linspace(1.0, 1 / n, n), mu=m)
        ref[f"sigmas_{n}_{seq}"] = sched.sigmas.float().contiguous()
    save_file(ref, os.path.join(ROOT, "schedules.safetensors"))


def build_lora(model, cfg: dict):
    """Rank-4 peft-style LoRA on every nn.Linear of the guidance model (diffusers names, prefix `transformer.`,
    no alpha => scale 1), and the reference output of the MERGED model (W + B A) on inputs_b2."""
    torch.manual_seed(11)
    lora = {}
    merged = make_model(cfg, 1)  # same weights as `model`
    merged.load_state_dict(model.state_dict())
    with torch.no_grad():
        for name, mod in merged.named_modules():
            if isinstance(mod, torch.nn.Linear):
                a = representable(torch.randn(4, mod.in_features) * 0.3 / mod.in_features ** 0.5)
                b = representable(torch.randn(mod.out_features, 4) * 0.3)
                lora[f"transformer.{name}.lora_A.weight"] = a.contiguous()
                lora[f"transformer.{name}.lora_B.weight"] = b.contiguous()
                mod.weight += b @ a
    save_file(lora, os.path.join(ROOT, "guidance", "lora-peft.safetensors"))
    inp = inputs_for(cfg, 2, 1 + 2, True)
    save_file({"sample": run(merged, inp).contiguous()}, os.path.join(ROOT, "guidance", "lora_outputs_b2.safetensors"))


def dev_keys():
    """Real FLUX.1-dev key names and shapes (diffusers from the model class on the meta device, BFL converted)."""
    with torch.device("meta"):
        model = FluxTransformer2DModel(guidance_embeds=True)
    sd = model.state_dict()
    diff = {k: list(v.shape) for k, v in sd.items()}
    bfl_t = diffusers_to_bfl({k: torch.empty(v.shape, device="meta") for k, v in sd.items()}, 19, 38)
    bfl = {k: list(v.shape) for k, v in bfl_t.items()}
    with open(os.path.join(ROOT, "flux1-dev-keys.json"), "w") as f:
        json.dump({"diffusers": diff, "bfl": bfl}, f, separators=(",", ":"), sort_keys=True)


def main():
    torch.set_num_threads(2)
    common = dict(patch_size=1, in_channels=16, out_channels=None, attention_head_dim=32, num_attention_heads=2,
                  joint_attention_dim=32, pooled_projection_dim=16, axes_dims_rope=[4, 14, 14])
    guided = build_variant("guidance", {**common, "num_layers": 2, "num_single_layers": 2, "guidance_embeds": True}, 1)
    build_variant("plain", {**common, "num_layers": 1, "num_single_layers": 1, "guidance_embeds": False}, 2)
    build_sampling(guided, {**common, "guidance_embeds": True})
    build_lora(guided, {**common, "num_layers": 2, "num_single_layers": 2, "guidance_embeds": True})
    dev_keys()
    total = 0
    for dp, _, fs in os.walk(ROOT):
        for f in fs:
            total += os.path.getsize(os.path.join(dp, f))
    print(f"fixtures written to {ROOT}: {total / 1e6:.2f} MB")


if __name__ == "__main__":
    sys.exit(main())
