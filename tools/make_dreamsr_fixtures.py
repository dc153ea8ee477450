"""Writes Tests/Fixtures/dreamsr/*: tiny FLUX + DreamSR checkpoints and reference inputs/outputs.

    .venv-ref/bin/python (scripts/setup-reference-env.sh) tools/make_dreamsr_fixtures.py [--out Tests/Fixtures/dreamsr]

Files (weights stored as BF16; values are generated already rounded to bf16, so the float32 computation here is the
exact reference for an engine that widens them to float32):
- flux-tiny.safetensors      FLUX transformer, diffusers layout, metadata `flux_config`.
- dreamsr-tiny.safetensors   DreamSR checkpoint in our format (metadata `dreamsr_config`), random NON-zero weights
                             everywhere (incl. fc2, to_out, controlnet_x_embedder, lora_B).
- step.safetensors           `dreamsr-step` contract inputs + `sample`; also `flux_sample` = plain FLUX on the same
                             inputs, which a model with fc2 = to_out = 0 (and any LoRA) must reproduce exactly, and
                             `sample_interval_depth1`: the checkpoint cut to ControlNet depth 1 with "interval" injection.
- restore.safetensors        `dreamsr-restore` contract inputs + `sample` and `z_dr`.
- run.safetensors            whole 1 + 16 run on a 24x36 latent (2x3 patches of 16 latent, overlap 4, gaussian):
                             `z_lq`, `noise` [16,24,36], `encoder_hidden_states` [T,D], `pooled_projections` [P],
                             `local_encoder_hidden_states` [6,T2,D], `local_pooled_projections` [6,P]; outputs `z_dr`,
                             `z_out`, `sigmas` [17], `grid_ys`, `grid_xs`; plus `z_out_uniform` (uniform weighting) and
                             `z_out_global_ids` (rope_ids "global": ids offset by the patch position / 2).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dreamsr_reference as R  # noqa: E402
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel  # noqa: E402
from safetensors.torch import save_file  # noqa: E402

TINY_FLUX = dict(patch_size=1, in_channels=64, num_layers=2, num_single_layers=2, attention_head_dim=16,
                 num_attention_heads=4, joint_attention_dim=32, pooled_projection_dim=16, guidance_embeds=True,
                 axes_dims_rope=(4, 6, 6))
TINY_DREAMSR = R.DreamSRConfig(controlnet_depth=2, injection="corresponding", patch_size=128, patch_overlap=32,
                               lora_rank=4, lora_alpha=8.0, texture_steps=16, schedule="shifted",
                               patch_weighting="gaussian", rope_ids="patch")


def bf16_round_(module: torch.nn.Module) -> None:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(torch.bfloat16).float())


def randomize_(module: torch.nn.Module, gen: torch.Generator) -> None:
    """Non-zero random weights of a sane scale everywhere (zero-init layers included)."""
    with torch.no_grad():
        for name, p in module.named_parameters():
            if p.ndim == 2:
                fan_in = p.shape[1]
                p.copy_(torch.randn(p.shape, generator=gen) / fan_in ** 0.5)
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape, generator=gen))
            else:  # norm scales
                p.copy_(1 + 0.2 * torch.randn(p.shape, generator=gen))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests/Fixtures/dreamsr"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1234)

    flux = FluxTransformer2DModel(**TINY_FLUX).eval()
    randomize_(flux, gen)
    bf16_round_(flux)
    cfg = TINY_DREAMSR
    cfg.validate(len(flux.transformer_blocks))
    cn = R.DreamSRControlNet.from_transformer(flux, cfg.controlnet_depth)
    # Fresh model: zero-init parts must make it compute plain FLUX.
    with torch.no_grad():
        for m in cn.controlnet_img_mlps:
            assert m.fc2.weight.abs().sum() == 0
        for m in cn.context_attn:
            assert m.to_out.weight.abs().sum() == 0
    randomize_(cn, gen)
    bf16_round_(cn)
    loras = R.install_lora(flux, cn, cfg.lora_rank, cfg.lora_scale)
    with torch.no_grad():
        for m in loras.values():
            m.lora_A.weight.copy_(torch.randn(m.lora_A.weight.shape, generator=gen) / m.lora_A.weight.shape[1] ** 0.5)
            m.lora_B.weight.copy_(0.1 * torch.randn(m.lora_B.weight.shape, generator=gen) / cfg.lora_rank ** 0.5)
            m.lora_A.weight.copy_(m.lora_A.weight.to(torch.bfloat16).float())
            m.lora_B.weight.copy_(m.lora_B.weight.to(torch.bfloat16).float())

    R.save_flux(out / "flux-tiny.safetensors", flux, torch.bfloat16)
    R.save_dreamsr_checkpoint(out / "dreamsr-tiny.safetensors", cn, loras, cfg, torch.bfloat16)

    # Round-trip check of the checkpoint format.
    flux2 = FluxTransformer2DModel(**TINY_FLUX).eval()
    from safetensors.torch import load_file
    flux2.load_state_dict({k: v.float() for k, v in load_file(str(out / "flux-tiny.safetensors")).items()})
    cfg2, cn2, loras2 = R.load_dreamsr_checkpoint(out / "dreamsr-tiny.safetensors", flux2)
    assert cfg2 == cfg, (cfg2, cfg)

    D, P = TINY_FLUX["joint_attention_dim"], TINY_FLUX["pooled_projection_dim"]
    B, T, T2, side = 2, 8, 6, cfg.patch_latent
    L = (side // 2) ** 2

    def rnd(*shape, s=1.0):
        return s * torch.randn(shape, generator=gen)

    common = dict(
        cond_latents=rnd(B, L, 64), encoder_hidden_states=rnd(B, T, D), pooled_projections=rnd(B, P),
        local_encoder_hidden_states=rnd(B, T2, D), local_pooled_projections=rnd(B, P),
        guidance=torch.full((B,), cfg.guidance), img_ids=R.image_ids(side, side),
        txt_ids=torch.zeros(T, 3), local_txt_ids=torch.zeros(T2, 3))

    with torch.no_grad():
        # (b1) dreamsr-step, LoRA off.
        step_in = dict(common, hidden_states=rnd(B, L, 64), timestep=torch.tensor([0.8, 0.35]))
        with R.lora_enabled(loras, False):
            sample = R.dreamsr_forward(flux, cn, cfg, **step_in)
            flux_sample = R.dreamsr_forward(flux, cn, cfg, controlnet_on=False, **step_in)
        # (a) zero the output layers (and LoRA B): must reproduce plain FLUX, LoRA on or off.
        saved = {}
        for name, mod in [*(("mlp", m.fc2) for m in cn.controlnet_img_mlps),
                          *(("ctx", m.to_out) for m in cn.context_attn),
                          *(("lora", m.lora_B) for m in loras.values())]:
            saved[id(mod)] = (mod, [p.clone() for p in mod.parameters()])
            for p in mod.parameters():
                p.zero_()
        for on in (False, True):
            with R.lora_enabled(loras, on):
                z = R.dreamsr_forward(flux, cn, cfg, **step_in)
            err = (z - flux_sample).abs().max().item()
            assert err == 0.0, f"zero-init DreamSR differs from plain FLUX by {err} (lora {on})"
        for mod, ps in saved.values():
            for p, v in zip(mod.parameters(), ps):
                p.copy_(v)
        # Plain FLUX via diffusers' own forward == our loop without ControlNet.
        ref = FluxTransformer2DModel(**TINY_FLUX).eval()
        ref.load_state_dict(R._plain_state(flux))
        d = ref(hidden_states=step_in["hidden_states"], encoder_hidden_states=step_in["encoder_hidden_states"],
                pooled_projections=step_in["pooled_projections"], timestep=step_in["timestep"],
                img_ids=step_in["img_ids"], txt_ids=step_in["txt_ids"], guidance=step_in["guidance"]).sample
        assert (d - flux_sample).abs().max().item() < 1e-5
        assert (sample - flux_sample).abs().max().item() > 1e-2, "DreamSR parts have no visible effect"
        # "interval" injection with a depth-1 ControlNet (its block 0 = this model's; layer 0 feeds both main blocks).
        cfg_i = R.DreamSRConfig(**{**R.asdict(cfg), "controlnet_depth": 1, "injection": "interval"})
        with R.lora_enabled(loras, False):
            sample_interval = R.dreamsr_forward(flux, cn, cfg_i, **step_in)
        assert (sample_interval - sample).abs().max().item() > 1e-2
        save_file({**{k: v.contiguous() for k, v in step_in.items()}, "sample": sample,
                   "flux_sample": flux_sample, "sample_interval_depth1": sample_interval}, str(out / "step.safetensors"),
                  metadata={"component": "dreamsr-step"})

        # (b2) dreamsr-restore, LoRA on, x_t = z_lq, t = restore_t.
        restore_in = dict(common)
        with R.lora_enabled(loras, True):
            v = R.dreamsr_forward(flux, cn, cfg, hidden_states=restore_in["cond_latents"],
                                  timestep=torch.full((B,), cfg.restore_t), **restore_in)
        with R.lora_enabled(loras, False):
            v_nolora = R.dreamsr_forward(flux, cn, cfg, hidden_states=restore_in["cond_latents"],
                                         timestep=torch.full((B,), cfg.restore_t), **restore_in)
        assert (v - v_nolora).abs().max().item() > 1e-2, "LoRA has no visible effect"
        z_dr = restore_in["cond_latents"] - cfg.restore_t * v
        save_file({**{k: v_.contiguous() for k, v_ in restore_in.items()}, "sample": v, "z_dr": z_dr},
                  str(out / "restore.safetensors"), metadata={"component": "dreamsr-restore"})

        # (b3) whole 1 + 16 run on a 2x3-patch latent image.
        H, W, NP = 24, 36, 6
        run_in = dict(z_lq=rnd(16, H, W), noise=rnd(16, H, W), encoder_hidden_states=rnd(T, D),
                      pooled_projections=rnd(P), local_encoder_hidden_states=rnd(NP, T2, D),
                      local_pooled_projections=rnd(NP, P))
        gp = R.PatchPrompt(run_in["encoder_hidden_states"], run_in["pooled_projections"])
        lps = [R.PatchPrompt(run_in["local_encoder_hidden_states"][i], run_in["local_pooled_projections"][i])
               for i in range(NP)]
        res = R.run_dreamsr(flux, cn, loras, cfg, run_in["z_lq"], run_in["noise"], gp, lps)
        assert len(res.grid[0]) == 2 and len(res.grid[1]) == 3, res.grid
        cfg_u = R.DreamSRConfig(**{**R.asdict(cfg), "patch_weighting": "uniform"})
        res_u = R.run_dreamsr(flux, cn, loras, cfg_u, run_in["z_lq"], run_in["noise"], gp, lps)
        cfg_g = R.DreamSRConfig(**{**R.asdict(cfg), "rope_ids": "global"})
        res_g = R.run_dreamsr(flux, cn, loras, cfg_g, run_in["z_lq"], run_in["noise"], gp, lps)
        assert (res_g.z_out - res.z_out).abs().max().item() > 1e-3, "global RoPE ids have no visible effect"
        save_file({**{k: v_.contiguous() for k, v_ in run_in.items()}, "z_dr": res.z_dr, "z_out": res.z_out,
                   "z_out_uniform": res_u.z_out, "z_out_global_ids": res_g.z_out, "sigmas": torch.tensor(res.sigmas, dtype=torch.float64).float(),
                   "grid_ys": torch.tensor(res.grid[0], dtype=torch.int32),
                   "grid_xs": torch.tensor(res.grid[1], dtype=torch.int32)},
                  str(out / "run.safetensors"),
                  metadata={"component": "dreamsr-run", "dreamsr_config": cfg.to_json(),
                            "sigmas": json.dumps(res.sigmas)})

    # Schedule numbers for the pure-Swift schedule tests (full-size defaults).
    sched = {
        "shifted_512": R.texture_sigmas(R.DreamSRConfig()),
        "linear_512": R.texture_sigmas(R.DreamSRConfig(schedule="linear")),
        "shifted_tiny": R.texture_sigmas(cfg),
        "mu_1024": R.calculate_mu(1024),
        "positions": {f"{n}_{t}_{o}": R.patch_positions(n, t, o) for (n, t, o) in
                      [(24, 16, 4), (36, 16, 4), (64, 64, 16), (100, 64, 16), (130, 64, 16), (65, 64, 16)]},
        "gaussian_16": R.patch_weight_profile("gaussian", 16).tolist(),
        "reflect_5_to_12": [R.reflect_index(i, 5) for i in range(12)],
    }
    (out / "schedule.json").write_text(json.dumps(sched, indent=1) + "\n")
    total = sum(f.stat().st_size for f in out.iterdir())
    for f in sorted(out.iterdir()):
        print(f"{f.name}: {f.stat().st_size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
