"""PyTorch reference of DreamSR as the project spec (shared/reference/dreamsr-architecture.md) defines it.

Built on diffusers' FLUX modules (FluxTransformer2DModel for the frozen main network, FluxTransformerBlock for the
ControlNet's double blocks). Everything DreamSR-specific lives here:

- `DreamSRConfig`: the checkpoint's `dreamsr_config` fields with the spec's defaults and validation.
- `DreamSRControlNet`: embedders (copies of the main ones), `controlnet_x_embedder` (zero-init), `depth` double
  blocks, the image MLPs (fc2 zero-init) and the Context Cross-Attention modules (to_out zero-init).
- `LoRALinear`: an unmerged LoRA wrapper y = W x + b + s * B(A x), active only while `lora_enabled(model)` is on.
- `dreamsr_forward`: one velocity prediction of main network + ControlNet with "corresponding" or "interval"
  injection.
- `texture_sigmas`, `patch_positions`, `patch_weight_profile`, `run_dreamsr`: the 1 + N patch sampler with per-step
  MultiDiffusion aggregation of velocities, reflection padding of small images and 0-based per-patch RoPE ids.
- `save_dreamsr_checkpoint` / `load_dreamsr_checkpoint`: our checkpoint format (one safetensors file, metadata key
  `dreamsr_config`, tensor names of the spec's "Checkpoint files" section).

Run with .venv-ref/bin/python (scripts/setup-reference-env.sh); `tools/make_dreamsr_fixtures.py` uses it to write the committed fixtures.
"""
from __future__ import annotations

import contextlib
import json
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from diffusers.models.embeddings import CombinedTimestepGuidanceTextProjEmbeddings
from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel, FluxTransformerBlock

# ----------------------------------------------------------------------------------------------------------------
# Config

SCHEDULES = ("shifted", "linear")
INJECTIONS = ("corresponding", "interval")
WEIGHTINGS = ("gaussian", "uniform")
ROPE_IDS = ("patch", "global")
COLOR_FIXES = ("wavelet", "adain", "none")


@dataclass
class DreamSRConfig:
    controlnet_depth: int = 9
    injection: str = "corresponding"
    restore_t: float = 1.0
    texture_t: float = 0.8
    texture_steps: int = 16
    # "shifted" | "linear" | explicit list of texture_steps + 1 sigmas (first = start sigma, non-increasing).
    schedule: Any = "shifted"
    guidance: float = 3.5
    patch_size: int = 512  # output pixels (latent = /8)
    patch_overlap: int = 128  # output pixels (latent = /8)
    patch_weighting: str = "gaussian"
    rope_ids: str = "patch"
    lora_rank: int = 256
    lora_alpha: float = 256.0
    color_fix: str = "wavelet"
    scale: int = 4

    @property
    def lora_scale(self) -> float:
        return self.lora_alpha / self.lora_rank

    @property
    def patch_latent(self) -> int:
        return self.patch_size // 8

    @property
    def overlap_latent(self) -> int:
        return self.patch_overlap // 8

    def validate(self, main_double_blocks: int | None = None) -> None:
        def bad(key, why):
            raise ValueError(f"dreamsr_config: `{key}` {why}")

        if self.controlnet_depth < 1:
            bad("controlnet_depth", f"must be >= 1, got {self.controlnet_depth}")
        if main_double_blocks is not None and self.controlnet_depth > main_double_blocks:
            bad("controlnet_depth", f"{self.controlnet_depth} exceeds the main network's {main_double_blocks} double blocks")
        if self.injection not in INJECTIONS:
            bad("injection", f"must be one of {INJECTIONS}, got {self.injection!r}")
        if not (0 < self.restore_t <= 1):
            bad("restore_t", f"must be in (0, 1], got {self.restore_t}")
        if not (0 < self.texture_t <= 1):
            bad("texture_t", f"must be in (0, 1], got {self.texture_t}")
        if self.texture_steps < 1:
            bad("texture_steps", f"must be >= 1, got {self.texture_steps}")
        if isinstance(self.schedule, str):
            if self.schedule not in SCHEDULES:
                bad("schedule", f"must be one of {SCHEDULES} or a list of sigmas, got {self.schedule!r}")
        else:
            s = list(self.schedule)
            if len(s) != self.texture_steps + 1:
                bad("schedule", f"explicit list needs texture_steps + 1 = {self.texture_steps + 1} sigmas, got {len(s)}")
            if any(not (0 <= x <= 1) for x in s) or any(b > a for a, b in zip(s, s[1:])):
                bad("schedule", "explicit sigmas must lie in [0, 1] and be non-increasing")
        if self.patch_size <= 0 or self.patch_size % 16:
            bad("patch_size", f"must be a positive multiple of 16 pixels, got {self.patch_size}")
        if self.patch_overlap < 0 or self.patch_overlap % 8 or self.patch_overlap >= self.patch_size:
            bad("patch_overlap", f"must be a multiple of 8 in [0, patch_size), got {self.patch_overlap}")
        if self.patch_weighting not in WEIGHTINGS:
            bad("patch_weighting", f"must be one of {WEIGHTINGS}, got {self.patch_weighting!r}")
        if self.rope_ids not in ROPE_IDS:
            bad("rope_ids", f"must be one of {ROPE_IDS}, got {self.rope_ids!r}")
        if self.lora_rank < 1:
            bad("lora_rank", f"must be >= 1, got {self.lora_rank}")
        if self.color_fix not in COLOR_FIXES:
            bad("color_fix", f"must be one of {COLOR_FIXES}, got {self.color_fix!r}")
        if self.scale < 1:
            bad("scale", f"must be >= 1, got {self.scale}")

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @staticmethod
    def from_json(text: str) -> "DreamSRConfig":
        raw = json.loads(text)
        known = {f for f in DreamSRConfig.__dataclass_fields__}
        cfg = DreamSRConfig(**{k: v for k, v in raw.items() if k in known})
        cfg.validate()
        return cfg


# ----------------------------------------------------------------------------------------------------------------
# Schedule


def calculate_mu(tokens: int) -> float:
    m = (1.15 - 0.5) / (4096 - 256)
    return m * tokens + (0.5 - m * 256)


def time_shift(mu: float, u: float) -> float:
    if u <= 0:
        return 0.0
    return math.exp(mu) / (math.exp(mu) + (1 / u - 1))


def inverse_time_shift(mu: float, sigma: float) -> float:
    return 1.0 / (1.0 + math.exp(mu) * (1 / sigma - 1))


def texture_sigmas(cfg: DreamSRConfig) -> list[float]:
    """texture_steps + 1 sigmas, first = start sigma, last = 0 (for "shifted"/"linear")."""
    n = cfg.texture_steps
    if not isinstance(cfg.schedule, str):
        return [float(x) for x in cfg.schedule]
    if cfg.schedule == "linear":
        return [cfg.texture_t * (1 - k / n) for k in range(n)] + [0.0]
    tokens = (cfg.patch_latent // 2) ** 2
    mu = calculate_mu(tokens)
    u0 = inverse_time_shift(mu, cfg.texture_t)
    return [cfg.texture_t] + [time_shift(mu, u0 * (1 - k / n)) for k in range(1, n)] + [0.0]


# ----------------------------------------------------------------------------------------------------------------
# LoRA

MAIN_DOUBLE_LORA = ("norm1.linear", "norm1_context.linear", "attn.to_q", "attn.to_k", "attn.to_v", "attn.add_q_proj",
                    "attn.add_k_proj", "attn.add_v_proj", "attn.to_out.0", "attn.to_add_out", "ff.net.0.proj",
                    "ff.net.2", "ff_context.net.0.proj", "ff_context.net.2")
SINGLE_LORA = ("norm.linear", "attn.to_q", "attn.to_k", "attn.to_v", "proj_mlp", "proj_out")


class LoRALinear(nn.Module):
    """y = W x + b + scale * B(A x), the LoRA term only while `enabled`."""

    def __init__(self, base: nn.Linear, rank: int, scale: float):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, rank, bias=False)
        self.lora_B = nn.Linear(rank, base.out_features, bias=False)
        nn.init.zeros_(self.lora_B.weight)
        self.scale = scale
        self.enabled = False

    @property
    def weight(self):
        return self.base.weight

    def forward(self, x):
        y = self.base(x)
        if self.enabled:
            y = y + self.scale * self.lora_B(self.lora_A(x))
        return y


def _set_module(root: nn.Module, dotted: str, module: nn.Module) -> None:
    parent_name, _, leaf = dotted.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, leaf, module)


def lora_targets(flux: FluxTransformer2DModel, controlnet: "DreamSRControlNet") -> dict[str, tuple[nn.Module, str]]:
    """checkpoint prefix -> (root module, dotted module path) for every LoRA'd Linear."""
    out = {}
    for i in range(len(flux.transformer_blocks)):
        for m in MAIN_DOUBLE_LORA:
            out[f"transformer.transformer_blocks.{i}.{m}"] = (flux, f"transformer_blocks.{i}.{m}")
    for i in range(len(flux.single_transformer_blocks)):
        for m in SINGLE_LORA:
            out[f"transformer.single_transformer_blocks.{i}.{m}"] = (flux, f"single_transformer_blocks.{i}.{m}")
    for i in range(len(controlnet.transformer_blocks)):
        for m in MAIN_DOUBLE_LORA:
            out[f"controlnet.transformer_blocks.{i}.{m}"] = (controlnet, f"transformer_blocks.{i}.{m}")
    return out


def install_lora(flux, controlnet, rank: int, scale: float) -> dict[str, LoRALinear]:
    installed = {}
    for key, (root, path) in lora_targets(flux, controlnet).items():
        base = root.get_submodule(path)
        if isinstance(base, LoRALinear):
            installed[key] = base
            continue
        wrapped = LoRALinear(base, rank, scale)
        _set_module(root, path, wrapped)
        installed[key] = wrapped
    return installed


@contextlib.contextmanager
def lora_enabled(loras: dict[str, LoRALinear], on: bool):
    for m in loras.values():
        m.enabled = on
    try:
        yield
    finally:
        for m in loras.values():
            m.enabled = False


# ----------------------------------------------------------------------------------------------------------------
# ControlNet, image MLPs, Context Cross-Attention


def _rms(x, weight, eps=1e-6):
    x32 = x.float()
    return (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * weight


class ContextCrossAttention(nn.Module):
    """Main (global prompt) text stream queries the ControlNet's local text features; output zero-init."""

    def __init__(self, dim: int, heads: int, head_dim: int):
        super().__init__()
        inner = heads * head_dim
        self.heads, self.head_dim = heads, head_dim
        self.to_q = nn.Linear(dim, inner)
        self.to_k = nn.Linear(dim, inner)
        self.to_v = nn.Linear(dim, inner)
        self.to_out = nn.Linear(inner, dim)
        self.norm_q = nn.Module()
        self.norm_q.weight = nn.Parameter(torch.ones(head_dim))
        self.norm_k = nn.Module()
        self.norm_k.weight = nn.Parameter(torch.ones(head_dim))
        nn.init.zeros_(self.to_out.weight)
        nn.init.zeros_(self.to_out.bias)

    def forward(self, txt, ctx):
        b, t, d = txt.shape
        t2 = ctx.shape[1]
        ln_t = F.layer_norm(txt, (d,), eps=1e-6)
        ln_c = F.layer_norm(ctx, (d,), eps=1e-6)
        q = self.to_q(ln_t).view(b, t, self.heads, self.head_dim).transpose(1, 2)
        k = self.to_k(ln_c).view(b, t2, self.heads, self.head_dim).transpose(1, 2)
        v = self.to_v(ln_c).view(b, t2, self.heads, self.head_dim).transpose(1, 2)
        q = _rms(q, self.norm_q.weight)
        k = _rms(k, self.norm_k.weight)
        o = F.scaled_dot_product_attention(q, k, v)
        o = o.transpose(1, 2).reshape(b, t, self.heads * self.head_dim)
        return self.to_out(o)


class ImageMLP(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, dim)
        self.fc2 = nn.Linear(dim, dim)
        nn.init.zeros_(self.fc2.weight)
        nn.init.zeros_(self.fc2.bias)

    def forward(self, x):
        return self.fc2(F.silu(self.fc1(x)))


class DreamSRControlNet(nn.Module):
    def __init__(self, flux: FluxTransformer2DModel, depth: int):
        super().__init__()
        c = flux.config
        dim = flux.inner_dim
        self.depth = depth
        self.x_embedder = nn.Linear(c.in_channels, dim)
        self.context_embedder = nn.Linear(c.joint_attention_dim, dim)
        self.time_text_embed = CombinedTimestepGuidanceTextProjEmbeddings(dim, c.pooled_projection_dim)
        self.transformer_blocks = nn.ModuleList(
            [FluxTransformerBlock(dim, c.num_attention_heads, c.attention_head_dim) for _ in range(depth)])
        self.controlnet_x_embedder = nn.Linear(c.in_channels, dim)
        self.controlnet_img_mlps = nn.ModuleList([ImageMLP(dim) for _ in range(depth)])
        self.context_attn = nn.ModuleList(
            [ContextCrossAttention(dim, c.num_attention_heads, c.attention_head_dim) for _ in range(depth)])
        nn.init.zeros_(self.controlnet_x_embedder.weight)
        nn.init.zeros_(self.controlnet_x_embedder.bias)

    @staticmethod
    def from_transformer(flux: FluxTransformer2DModel, depth: int) -> "DreamSRControlNet":
        """Spec item 1: blocks 0..depth-1 and the embedders copied from the main network; new parts fresh."""
        cn = DreamSRControlNet(flux, depth)
        cn.x_embedder.load_state_dict(flux.x_embedder.state_dict())
        cn.context_embedder.load_state_dict(flux.context_embedder.state_dict())
        cn.time_text_embed.load_state_dict(flux.time_text_embed.state_dict())
        for i in range(depth):
            cn.transformer_blocks[i].load_state_dict(_plain_state(flux.transformer_blocks[i]))
        return cn

    def forward(self, x, cond, local_ehs, local_pooled, timestep, guidance, rope):
        """Returns the per-layer (f_img, f_txt) features."""
        h = self.x_embedder(x) + self.controlnet_x_embedder(cond)
        temb = self.time_text_embed(timestep * 1000, guidance * 1000, local_pooled)
        txt = self.context_embedder(local_ehs)
        feats = []
        for blk in self.transformer_blocks:
            txt, h = blk(hidden_states=h, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope)
            feats.append((h, txt))
        return feats


def _plain_state(module: nn.Module) -> dict[str, torch.Tensor]:
    """State dict with LoRA wrappers folded away (`x.base.weight` -> `x.weight`, LoRA tensors dropped)."""
    out = {}
    for k, v in module.state_dict().items():
        if ".lora_A." in k or ".lora_B." in k:
            continue
        out[k.replace(".base.", ".")] = v
    return out


def injection_layer(cfg: DreamSRConfig, main_block: int, main_blocks: int) -> int | None:
    n = cfg.controlnet_depth
    if cfg.injection == "corresponding":
        return main_block if main_block < n else None
    interval = int(math.ceil(main_blocks / n))
    l = main_block // interval
    return l if l < n else None


def dreamsr_forward(flux, controlnet, cfg, *, hidden_states, cond_latents, encoder_hidden_states, pooled_projections,
                    local_encoder_hidden_states, local_pooled_projections, timestep, guidance, img_ids, txt_ids,
                    local_txt_ids, controlnet_on: bool = True):
    """One velocity prediction [B, L, 64] (LoRA state is whatever `lora_enabled` set)."""
    rope_main = flux.pos_embed(torch.cat((txt_ids, img_ids), 0))
    feats = None
    if controlnet_on:
        rope_c = flux.pos_embed(torch.cat((local_txt_ids, img_ids), 0))
        feats = controlnet(hidden_states, cond_latents, local_encoder_hidden_states, local_pooled_projections,
                           timestep, guidance, rope_c)
    h = flux.x_embedder(hidden_states)
    temb = flux.time_text_embed(timestep * 1000, guidance * 1000, pooled_projections)
    txt = flux.context_embedder(encoder_hidden_states)
    nblocks = len(flux.transformer_blocks)
    for i, blk in enumerate(flux.transformer_blocks):
        txt, h = blk(hidden_states=h, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope_main)
        l = injection_layer(cfg, i, nblocks) if feats is not None else None
        if l is not None:
            f_img, f_txt = feats[l]
            h = h + controlnet.controlnet_img_mlps[l](f_img)
            txt = txt + controlnet.context_attn[l](txt, f_txt)
    for blk in flux.single_transformer_blocks:
        txt, h = blk(hidden_states=h, encoder_hidden_states=txt, temb=temb, image_rotary_emb=rope_main)
    h = flux.norm_out(h, temb)
    return flux.proj_out(h)


# ----------------------------------------------------------------------------------------------------------------
# Packing, ids, patch grid, weights


def pack(latent):
    """[B,16,H,W] -> [B,(H/2)(W/2),64], feature = ch*4 + ph*2 + pw."""
    b, c, h, w = latent.shape
    x = latent.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack(tokens, h, w):
    b, _, f = tokens.shape
    c = f // 4
    x = tokens.view(b, h // 2, w // 2, c, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, c, h, w)


def image_ids(h_lat: int, w_lat: int, row0: float = 0.0, col0: float = 0.0):
    hh, ww = h_lat // 2, w_lat // 2
    ids = torch.zeros(hh, ww, 3)
    ids[..., 1] = torch.arange(hh)[:, None].float() + row0
    ids[..., 2] = torch.arange(ww)[None, :].float() + col0
    return ids.reshape(hh * ww, 3)


def patch_positions(length: int, tile: int, overlap: int) -> list[int]:
    """Tiled Diffusion rule (same as Raster.TileGrid.positions): tile <= length."""
    if tile == length:
        return [0]
    stride = tile - overlap
    n = max((length - overlap + stride - 1) // stride, 2)
    step = (length - tile) / (n - 1)
    return [min(int(i * step), length - tile) for i in range(n)]


def patch_weight_profile(kind: str, size: int) -> torch.Tensor:
    """1-D profile, same as Raster.TileWeighting (.uniform / .gaussian)."""
    if kind == "uniform":
        return torch.ones(size, dtype=torch.float64)
    mid = (size - 1) / 2
    d = torch.arange(size, dtype=torch.float64) - mid
    return torch.exp(-d * d / (2 * 0.01 * size * size)).clamp_min(1e-30)


def reflect_index(i: int, n: int) -> int:
    """Index i >= 0 into an axis of n by repeated reflection without edge repeat (numpy/torch 'reflect')."""
    if n == 1:
        return 0
    period = 2 * (n - 1)
    m = i % period
    return period - m if m >= n else m


def reflect_pad(latent, h_to: int, w_to: int):
    """[C,H,W] -> [C,h_to,w_to] padded at the bottom/right by reflection."""
    _, h, w = latent.shape
    rows = torch.tensor([reflect_index(i, h) for i in range(h_to)])
    cols = torch.tensor([reflect_index(j, w) for j in range(w_to)])
    return latent[:, rows][:, :, cols]


@dataclass
class PatchPrompt:
    encoder_hidden_states: torch.Tensor  # [T, Dtxt]
    pooled: torch.Tensor  # [Dpool]


@dataclass
class SamplerResult:
    z_dr: torch.Tensor
    z_out: torch.Tensor
    sigmas: list[float]
    grid: tuple[list[int], list[int]] = field(default_factory=lambda: ([], []))


def run_dreamsr(flux, controlnet, loras, cfg: DreamSRConfig, z_lq, noise, global_prompt: PatchPrompt,
                local_prompts: list[PatchPrompt], txt_ids=None, local_txt_ids=None, restore: bool = True,
                controlnet_on: bool = True) -> SamplerResult:
    """1 restoration pass (LoRA on) + texture_steps Euler steps (LoRA off), MultiDiffusion per step.

    z_lq, noise: [16, H, W] latent (H, W even). local_prompts: one per patch, row-major.
    """
    c, h, w = z_lq.shape
    p, o = cfg.patch_latent, cfg.overlap_latent
    hp, wp = max(h, p), max(w, p)
    zl = reflect_pad(z_lq, hp, wp)
    nz = reflect_pad(noise, hp, wp)
    ys, xs = patch_positions(hp, p, o), patch_positions(wp, p, o)
    patches = [(y, x) for y in ys for x in xs]
    if len(local_prompts) != len(patches):
        raise ValueError(f"{len(local_prompts)} local prompts for {len(patches)} patches")
    prof = patch_weight_profile(cfg.patch_weighting, p)
    wmap = (prof[:, None] * prof[None, :]).float()  # [p, p]
    wsum = torch.zeros(hp, wp)
    for (y, x) in patches:
        wsum[y:y + p, x:x + p] += wmap

    bsz = len(patches)
    ehs = global_prompt.encoder_hidden_states[None].expand(bsz, -1, -1)
    pooled = global_prompt.pooled[None].expand(bsz, -1)
    lehs = torch.stack([lp.encoder_hidden_states for lp in local_prompts])
    lpooled = torch.stack([lp.pooled for lp in local_prompts])
    t_txt = ehs.shape[1]
    t_loc = lehs.shape[1]
    txt_ids = torch.zeros(t_txt, 3) if txt_ids is None else txt_ids
    local_txt_ids = torch.zeros(t_loc, 3) if local_txt_ids is None else local_txt_ids
    if cfg.rope_ids == "patch":
        ids_per_patch = [image_ids(p, p)] * bsz
    else:
        ids_per_patch = [image_ids(p, p, y / 2, x / 2) for (y, x) in patches]
    cond_tokens = pack(torch.stack([zl[:, y:y + p, x:x + p] for (y, x) in patches]))
    guidance = torch.full((bsz,), float(cfg.guidance))

    def velocity(latent, sigma: float):
        x_tokens = pack(torch.stack([latent[:, y:y + p, x:x + p] for (y, x) in patches]))
        vs = []
        # Patches share img ids when rope_ids == "patch": one batched call; otherwise one call per patch.
        groups = [list(range(bsz))] if cfg.rope_ids == "patch" else [[i] for i in range(bsz)]
        for g in groups:
            vs.append(dreamsr_forward(
                flux, controlnet, cfg, hidden_states=x_tokens[g], cond_latents=cond_tokens[g],
                encoder_hidden_states=ehs[g], pooled_projections=pooled[g], local_encoder_hidden_states=lehs[g],
                local_pooled_projections=lpooled[g], timestep=torch.full((len(g),), float(sigma)),
                guidance=guidance[g], img_ids=ids_per_patch[g[0]], txt_ids=txt_ids, local_txt_ids=local_txt_ids,
                controlnet_on=controlnet_on))
        v = unpack(torch.cat(vs), p, p)  # [B,16,p,p]
        acc = torch.zeros(c, hp, wp)
        for i, (y, x) in enumerate(patches):
            acc[:, y:y + p, x:x + p] += v[i] * wmap
        return acc / wsum

    sig = texture_sigmas(cfg)
    if restore:
        with lora_enabled(loras, True):
            v = velocity(zl, cfg.restore_t)
        z_dr = zl - cfg.restore_t * v
    else:
        z_dr = zl
    with lora_enabled(loras, False):
        x = (1 - sig[0]) * z_dr + sig[0] * nz
        for k in range(len(sig) - 1):
            v = velocity(x, sig[k])
            x = x + (sig[k + 1] - sig[k]) * v
    return SamplerResult(z_dr=z_dr[:, :h, :w].contiguous(), z_out=x[:, :h, :w].contiguous(), sigmas=sig,
                         grid=(ys, xs))


# ----------------------------------------------------------------------------------------------------------------
# Checkpoints (our format)


def dreamsr_state(controlnet: DreamSRControlNet, loras: dict[str, LoRALinear]) -> dict[str, torch.Tensor]:
    out = {f"controlnet.{k}": v for k, v in _plain_state(controlnet).items()}
    for key, m in loras.items():
        out[f"{key}.lora_A.weight"] = m.lora_A.weight
        out[f"{key}.lora_B.weight"] = m.lora_B.weight
    return out


def save_dreamsr_checkpoint(path, controlnet, loras, cfg: DreamSRConfig, dtype=torch.float32):
    from safetensors.torch import save_file
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in sorted(dreamsr_state(controlnet, loras).items())}
    save_file(tensors, str(path), metadata={"dreamsr_config": cfg.to_json()})


def save_flux(path, flux, dtype=torch.float32):
    from safetensors.torch import save_file
    tensors = {k: v.detach().to(dtype).contiguous() for k, v in sorted(_plain_state(flux).items())}
    save_file(tensors, str(path), metadata={"flux_config": json.dumps(dict(flux.config))})


def load_dreamsr_checkpoint(path, flux: FluxTransformer2DModel):
    """-> (cfg, controlnet, loras) on top of `flux` (whose Linears get LoRA wrappers)."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
        if "dreamsr_config" not in meta:
            raise ValueError(f"{path}: no `dreamsr_config` metadata")
        cfg = DreamSRConfig.from_json(meta["dreamsr_config"])
        tensors = {k: f.get_tensor(k).float() for k in f.keys()}
    cfg.validate(len(flux.transformer_blocks))
    cn = DreamSRControlNet(flux, cfg.controlnet_depth)
    cn_state = {k[len("controlnet."):]: v for k, v in tensors.items()
                if k.startswith("controlnet.") and ".lora_" not in k}
    missing, unexpected = cn.load_state_dict(cn_state, strict=False)
    if missing or unexpected:
        raise ValueError(f"{path}: ControlNet missing {missing[:5]} unexpected {unexpected[:5]}")
    loras = install_lora(flux, cn, cfg.lora_rank, cfg.lora_scale)
    for key, m in loras.items():
        a, b = tensors.get(f"{key}.lora_A.weight"), tensors.get(f"{key}.lora_B.weight")
        if a is None or b is None:
            raise ValueError(f"{path}: missing LoRA {key}.lora_A/B.weight")
        m.lora_A.weight.data.copy_(a)
        m.lora_B.weight.data.copy_(b)
    return cfg, cn, loras
