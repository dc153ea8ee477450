"""PyTorch reference of the WHOLE DreamSR image path (image in -> image out) and the fixtures of the end-to-end parity
test Tests/DreamsrAppTests/DreamSRImageParityTests.swift.

    /work/refenv/bin/python tools/dreamsr_image_reference.py [--out Tests/Fixtures/dreamsr_e2e]

Written from ../shared/reference/dreamsr-architecture.md (items 6-11 and the ablation table) and
flux-and-tiling-spec.md (sections 2.4, 2.5, 3, 6); the models are the tiny random set already committed
(Tests/Fixtures/dreamsr: FLUX + DreamSR checkpoint, Tests/Fixtures/vae: VAE, Tests/Fixtures/pipeline: text encoders and
tokenizers) and run through `tools/dreamsr_reference.py` (the latent-level reference) and diffusers / transformers.
What this file adds is the pixel <-> latent path around them:

1. decode: 16-bit PNG -> floats v / 65535 (RGB, no alpha).
2. LR resize (item 9): Lanczos3 to LR x `scale` (the checkpoint's `scale`). Pillow's convention (support 3, centre
   (i + 0.5) * in / out, taps outside the image dropped and the rest renormalised) via Pillow itself on float images.
3. sides rounded up to a multiple of 16 (item 9). The spec does not say how the extra rows / columns are filled; item
   8 pads by reflection, so this does too (numpy / torch "reflect", bottom / right), and crops back after decoding.
4. value range: x * 2 - 1 (diffusers VaeImageProcessor.normalize).
5. VAE encode (item 9, spec 2.5): latent MEAN, z = 0.3611 (z_raw - 0.1159) with the VAE config's scaling / shift.
   The spec's tiled encoder / decoder share GroupNorm statistics across tiles and (for this size) keep the mid-block
   attention global, which is the untiled computation: the reference runs diffusers' AutoencoderKL untiled, and the
   test runs the CLI tiled (vae_tile 128 px: 2 x 2 encoder tiles, 16-cell decoder tiles), so the tiling is checked too.
6. sampler (items 6-8 and the ablation table): patches of `patch_size` with `patch_overlap`, Tiled Diffusion grid,
   gaussian (Mixture of Diffusers) weights, per-step weighted average of patch velocities (MultiDiffusion), 0-based
   per-patch RoPE ids; restoration pass z_dr = z_lq - restore_t * V (LoRA on); z_t = (1 - s0) z_dr + s0 eps; Euler
   over the texture sigmas (LoRA off).
   - dual-branch: ControlNet on (local prompt + z_lq patch), main network on the global prompt.
   - single-branch-global: ControlNet off, main network on the global prompt (restoration pass kept: LoRA on the
     main network).
   - single-branch-local: ControlNet off, main network on each patch's local prompt.
   - without-lora: no restoration pass, texture from z_lq at sigma 1 (texture_t = 1, shifted schedule, N steps
     = 20 by default as in pipelines/dreamsr-without-lora.yaml), ControlNet on.
7. noise: the spec leaves the generator open. Both sides implement the project's seed scheme (the same numbers, not
   stored noise): SplitMix64 (state = seed + 0x9E3779B97F4A7C15, each draw adds it again, then the SplitMix64
   finaliser), uniform u = ((bits >> 11) + 0.5) / 2^53, Box-Muller pairs (r = sqrt(-2 ln u1), a = 2 pi u2,
   n[i] = r cos a, n[i+1] = r sin a) in float64, rounded to float32, filled row-major over the [16, H/8, W/8] latent
   of the 16-aligned image. `splitmix_gaussian` below.
8. decode (item 11): z_raw = z / 0.3611 + 0.1159, VAE decode, pixels (x + 1) / 2, cropped to the output size.
9. colour fix against the Lanczos3-resized LR image (item 11); the spec names the methods, the formulas are StableSR's
   (`scripts/wavelet_color_fix.py`, where both come from): applied BEFORE clamping, as StableSR does (it fixes the
   decoder output, then clamps):
   - wavelet: 5 levels of a 3x3 binomial blur [1 2 1]^T [1 2 1] / 16 with dilation 2^i and replicate padding;
     result = x - low(x) + low(reference).
   - adain: per channel (x - mean_x) / std_x * std_ref + mean_ref, population std (StableSR uses the unbiased
     variance + 1e-5; at 30k pixels both differ by < 1e-5 here, far below the bound).
10. clamp to [0, 1]; the CLI writes 16-bit PNG for a 16-bit input (item 11: output keeps the input's bit depth).

Everything is float32 (the tiny weights are bf16- / f16-rounded, loaded as float32). Fixtures written to --out:
- lr.png                     the 16-bit RGB LR input (57 x 33: output 228 x 132, 16-aligned 240 x 144, latent 30 x 18
                             -> 2 x 3 patches of 16 latent cells with overlap 4).
- expected.safetensors       float32 [3, 132, 228] per case (key = case name), metadata: the cases' YAML knobs,
                             the prompts, the seed.
"""
from __future__ import annotations

import argparse
import json
import math
import struct
import sys
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import dreamsr_reference as R  # noqa: E402
from make_dreamsr_fixtures import TINY_FLUX  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "Tests/Fixtures"

GLOBAL_PROMPT = "high quality photo, sharp focus, highly detailed, natural textures"
LOCAL_PROMPT = "a close-up of rough stone with moss"
SEED = 7
LR_W, LR_H = 57, 33

# case name -> (mode, colour fix); every mode once, dual-branch with both colour fixes, each fix at least twice.
CASES = {
    "dual-branch-wavelet": ("dual-branch", "wavelet"),
    "dual-branch-adain": ("dual-branch", "adain"),
    "single-branch-global-adain": ("single-branch-global", "adain"),
    "single-branch-local-wavelet": ("single-branch-local", "wavelet"),
    "without-lora-wavelet": ("without-lora", "wavelet"),
}
WITHOUT_LORA_STEPS = 20


# ------------------------------------------------------------------------------------------------------------------
# PNG (16-bit RGB) read / write without extra dependencies


def write_png16(path: Path, rgb: np.ndarray) -> None:
    """rgb: [H, W, 3] uint16."""
    h, w, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    png += chunk(b"IDAT", zlib.compress(raw, 9)) + chunk(b"IEND", b"")
    path.write_bytes(png)


def read_png16(path: Path) -> np.ndarray:
    """The 16-bit RGB PNG written by `write_png16` (filter 0 rows) -> [H, W, 3] float32 in [0, 1]."""
    data, pos, idat = path.read_bytes(), 8, b""
    while pos < len(data):
        n = struct.unpack(">I", data[pos:pos + 4])[0]
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + n]
        pos += 12 + n
        if kind == b"IHDR":
            w, h = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompress(idat)
    rows = [np.frombuffer(raw[y * (1 + 6 * w) + 1:(y + 1) * (1 + 6 * w)], dtype=">u2") for y in range(h)]
    return (np.stack(rows).reshape(h, w, 3).astype(np.float32) / 65535)


def make_lr() -> np.ndarray:
    """A 57 x 33 test picture: gradients, a checker, a disc and mild seeded noise; [H, W, 3] uint16."""
    rng = np.random.default_rng(5)
    y, x = np.mgrid[0:LR_H, 0:LR_W].astype(np.float64)
    r = 0.15 + 0.7 * x / (LR_W - 1)
    g = 0.2 + 0.6 * y / (LR_H - 1)
    b = np.where(((x // 6) + (y // 6)) % 2 == 0, 0.75, 0.25)
    disc = (x - 38) ** 2 + (y - 15) ** 2 < 64
    r = np.where(disc, 0.9, r)
    g = np.where(disc, 0.35, g)
    img = np.stack([r, g, b], -1) + 0.03 * rng.standard_normal((LR_H, LR_W, 3))
    return np.round(np.clip(img, 0, 1) * 65535).astype(np.uint16)


# ------------------------------------------------------------------------------------------------------------------
# Noise: SplitMix64 + Box-Muller (see the module docstring, item 7)

MASK = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15


def splitmix_gaussian(shape, seed: int) -> torch.Tensor:
    n = int(np.prod(shape))
    state = (seed + GOLDEN) & MASK
    out = np.empty(n, dtype=np.float32)

    def nxt():
        nonlocal state
        state = (state + GOLDEN) & MASK
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK
        return z ^ (z >> 31)

    def uniform():
        return ((nxt() >> 11) + 0.5) / float(1 << 53)

    i = 0
    while i < n:
        rad = math.sqrt(-2 * math.log(uniform()))
        a = 2 * math.pi * uniform()
        out[i] = rad * math.cos(a)
        if i + 1 < n:
            out[i + 1] = rad * math.sin(a)
        i += 2
    return torch.from_numpy(out.reshape(shape))


# ------------------------------------------------------------------------------------------------------------------
# Models


def load_models():
    from diffusers import AutoencoderKL
    from diffusers.models.transformers.transformer_flux import FluxTransformer2DModel
    from safetensors.torch import load_file
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer, T5Config, T5EncoderModel
    from tokenizers import Tokenizer

    flux = FluxTransformer2DModel(**TINY_FLUX).eval()
    flux.load_state_dict({k: v.float() for k, v in load_file(str(FIX / "dreamsr/flux-tiny.safetensors")).items()})
    cfg, cn, loras = R.load_dreamsr_checkpoint(FIX / "dreamsr/dreamsr-tiny.safetensors", flux)
    cn.eval()

    vcfg = json.loads((FIX / "vae/vae_small_config.json").read_text())
    vae = AutoencoderKL(**{k: v for k, v in vcfg.items() if not k.startswith("_")}).eval()
    vae.load_state_dict({k: v.float() for k, v in load_file(str(FIX / "vae/vae_small_diffusers.safetensors")).items()})

    def hf(model_cls, cfg_cls, folder):
        c = cfg_cls.from_dict(json.loads((folder / "config.json").read_text()))
        m = model_cls(c).eval()
        sd = {k: v.float() for k, v in load_file(str(folder / "model.safetensors")).items()}
        missing, unexpected = m.load_state_dict(sd, strict=False)
        if unexpected or [k for k in missing if "position_ids" not in k]:
            # older / newer transformers differ in the `text_model.` prefix
            prefix = "text_model." if model_cls is CLIPTextModel else ""
            sd = {(prefix + k if not k.startswith(prefix) else k): v for k, v in sd.items()}
            m.load_state_dict(sd, strict=True)
        return m

    clip = hf(CLIPTextModel, CLIPTextConfig, FIX / "pipeline/text_encoder")
    t5 = hf(T5EncoderModel, T5Config, FIX / "pipeline/text_encoder_2")
    clip_tok = CLIPTokenizer(str(FIX / "pipeline/tokenizer/vocab.json"), str(FIX / "pipeline/tokenizer/merges.txt"))
    # The fixture's tokenizer.json is minimal; the `tokenizers` library wants every added-token field spelled out.
    tj = json.loads((FIX / "pipeline/tokenizer_2/tokenizer.json").read_text())
    for t in tj.get("added_tokens", []):
        for key, default in (("single_word", False), ("lstrip", False), ("rstrip", False), ("normalized", False)):
            t.setdefault(key, default)
    t5_tok = Tokenizer.from_str(json.dumps(tj))
    return flux, cfg, cn, loras, vae, clip, t5, clip_tok, t5_tok


def encode_prompt(text, clip, t5, clip_tok, t5_tok) -> R.PatchPrompt:
    """Item 10 / spec 7: T5 ids as the tokenizer file's own post-processor gives them (the real T5 tokenizer.json
    appends `</s>` with its TemplateProcessing; the tiny fixture's file has no post-processor, so it appends nothing,
    exactly as diffusers' T5TokenizerFast would do with it), truncated / padded with 0 to 512, no mask,
    last_hidden_state; CLIP BOS + ids + EOS, padded with EOS to 77, pooler output (final-LN state at the first EOS)."""
    enc = t5_tok.encode(text).ids
    ids = enc[:512] if len(enc) <= 512 or enc[-1] != 1 else enc[:511] + [1]
    ids = ids + [0] * (512 - len(ids))
    cids = clip_tok(text, padding="max_length", max_length=77, truncation=True)["input_ids"]
    with torch.no_grad():
        states = t5(input_ids=torch.tensor([ids])).last_hidden_state[0]
        pooled = clip(input_ids=torch.tensor([cids])).pooler_output[0]
    return R.PatchPrompt(states.float(), pooled.float())


# ------------------------------------------------------------------------------------------------------------------
# Pixel path


def lanczos3(img: torch.Tensor, w: int, h: int) -> torch.Tensor:
    """[C, H, W] float -> [C, h, w] with Pillow's Lanczos3 on float ('F') images."""
    planes = []
    for c in range(img.shape[0]):
        p = Image.fromarray(img[c].numpy().astype(np.float32), mode="F").resize((w, h), Image.Resampling.LANCZOS)
        planes.append(torch.from_numpy(np.asarray(p, dtype=np.float32).copy()))
    return torch.stack(planes)


def wavelet_low(x: torch.Tensor, levels: int = 5) -> torch.Tensor:
    k = torch.tensor([[1, 2, 1], [2, 4, 2], [1, 2, 1]], dtype=torch.float32) / 16
    c = x.shape[0]
    weight = k[None, None].repeat(c, 1, 1, 1)
    low = x[None]
    for i in range(levels):
        d = 2 ** i
        low = F.conv2d(F.pad(low, (d, d, d, d), mode="replicate"), weight, groups=c, dilation=d)
    return low[0]


def color_fix(method: str, x: torch.Tensor, ref: torch.Tensor) -> torch.Tensor:
    if method == "none":
        return x
    if method == "wavelet":
        return x - wavelet_low(x) + wavelet_low(ref)
    xd, rd = x.double(), ref.double()
    mx, sx = xd.mean((1, 2), keepdim=True), xd.std((1, 2), keepdim=True, unbiased=False)
    mr, sr = rd.mean((1, 2), keepdim=True), rd.std((1, 2), keepdim=True, unbiased=False)
    return ((xd - mx) / sx * sr + mr).float()


def sample(flux, cn, loras, cfg, z_lq, noise, main_prompts, local_prompts, restore: bool, controlnet_on: bool):
    """Items 6-8 with a main-network prompt per patch (single-branch-local). z_lq, noise: [16, H, W]."""
    c, h, w = z_lq.shape
    p, o = cfg.patch_latent, cfg.overlap_latent
    hp, wp = max(h, p), max(w, p)
    zl, nz = R.reflect_pad(z_lq, hp, wp), R.reflect_pad(noise, hp, wp)
    ys, xs = R.patch_positions(hp, p, o), R.patch_positions(wp, p, o)
    patches = [(y, x) for y in ys for x in xs]
    prof = R.patch_weight_profile(cfg.patch_weighting, p)
    wmap = (prof[:, None] * prof[None, :]).float()
    wsum = torch.zeros(hp, wp)
    for (y, x) in patches:
        wsum[y:y + p, x:x + p] += wmap
    n = len(patches)
    ehs = torch.stack([main_prompts[i].encoder_hidden_states for i in range(n)])
    pooled = torch.stack([main_prompts[i].pooled for i in range(n)])
    lehs = torch.stack([local_prompts[i].encoder_hidden_states for i in range(n)])
    lpooled = torch.stack([local_prompts[i].pooled for i in range(n)])
    ids = R.image_ids(p, p)
    cond = R.pack(torch.stack([zl[:, y:y + p, x:x + p] for (y, x) in patches]))

    def velocity(latent, sigma):
        xt = R.pack(torch.stack([latent[:, y:y + p, x:x + p] for (y, x) in patches]))
        v = R.dreamsr_forward(flux, cn, cfg, hidden_states=xt, cond_latents=cond, encoder_hidden_states=ehs,
                              pooled_projections=pooled, local_encoder_hidden_states=lehs,
                              local_pooled_projections=lpooled, timestep=torch.full((n,), float(sigma)),
                              guidance=torch.full((n,), float(cfg.guidance)), img_ids=ids,
                              txt_ids=torch.zeros(ehs.shape[1], 3), local_txt_ids=torch.zeros(lehs.shape[1], 3),
                              controlnet_on=controlnet_on)
        v = R.unpack(v, p, p)
        acc = torch.zeros(c, hp, wp)
        for i, (y, x) in enumerate(patches):
            acc[:, y:y + p, x:x + p] += v[i] * wmap
        return acc / wsum

    sig = R.texture_sigmas(cfg)
    if restore:
        with R.lora_enabled(loras, True):
            z_dr = zl - cfg.restore_t * velocity(zl, cfg.restore_t)
    else:
        z_dr = zl
    with R.lora_enabled(loras, False):
        x = (1 - sig[0]) * z_dr + sig[0] * nz
        for k in range(len(sig) - 1):
            x = x + (sig[k + 1] - sig[k]) * velocity(x, sig[k])
    return x[:, :h, :w].contiguous(), sig, (ys, xs)


def upscale(lr: torch.Tensor, mode: str, fix: str, models, seed: int = SEED):
    """lr: [3, h, w] in [0, 1] -> ([3, h*s, w*s] in [0, 1], info)."""
    flux, cfg, cn, loras, vae, clip, t5, clip_tok, t5_tok = models
    s = cfg.scale
    ow, oh = lr.shape[2] * s, lr.shape[1] * s
    pw, ph = (ow + 15) // 16 * 16, (oh + 15) // 16 * 16
    ref = lanczos3(lr, ow, oh)
    padded = R.reflect_pad(ref, ph, pw)
    vc = vae.config
    with torch.no_grad():
        raw = vae.encode((padded * 2 - 1)[None]).latent_dist.mean[0]
        z_lq = vc.scaling_factor * (raw - vc.shift_factor)
        noise = splitmix_gaussian(tuple(z_lq.shape), seed)
        gp = encode_prompt(GLOBAL_PROMPT, clip, t5, clip_tok, t5_tok)
        lp = encode_prompt(LOCAL_PROMPT, clip, t5, clip_tok, t5_tok)
        mcfg = R.DreamSRConfig(**R.asdict(cfg))
        if mode == "without-lora":
            mcfg.texture_t, mcfg.texture_steps = 1.0, WITHOUT_LORA_STEPS
            if not isinstance(mcfg.schedule, str):
                mcfg.schedule = "shifted"
        n = 6  # patches, checked below
        mains = [lp] * n if mode == "single-branch-local" else [gp] * n
        z_out, sig, grid = sample(flux, cn, loras, mcfg, z_lq, noise, mains, [lp] * n,
                                  restore=mode != "without-lora",
                                  controlnet_on=mode in ("dual-branch", "without-lora"))
        assert (len(grid[0]), len(grid[1])) == (2, 3), grid
        px = vae.decode((z_out / vc.scaling_factor + vc.shift_factor)[None]).sample[0]
    out = ((px + 1) / 2)[:, :oh, :ow]
    fixed = color_fix(fix, out, ref).clamp(0, 1)
    return fixed, {"sigmas": sig, "grid": grid, "latent": list(z_lq.shape), "z_lq": z_lq, "z_out": z_out,
                   "resized": ref, "decoded": out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(FIX / "dreamsr_e2e"))
    ap.add_argument("--case", help="MODE:FIX: compute one case from the committed lr.png and write it with its "
                    "intermediates (z_lq, z_out, resized LR, decoded pixels before the colour fix) to --save")
    ap.add_argument("--save", help="output safetensors of --case")
    args = ap.parse_args()
    if args.case:
        mode, fix = args.case.split(":")
        lr = torch.from_numpy(read_png16(FIX / "dreamsr_e2e/lr.png")).permute(2, 0, 1).contiguous()
        img, info = upscale(lr, mode, fix, load_models())
        from safetensors.torch import save_file
        save_file({"image": img.contiguous(), **{k: info[k].contiguous() for k in ("z_lq", "z_out", "resized", "decoded")}},
                  args.save)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    lr16 = make_lr()
    write_png16(out / "lr.png", lr16)
    lr = torch.from_numpy(lr16.astype(np.float32) / 65535).permute(2, 0, 1).contiguous()
    models = load_models()
    results, info = {}, {}
    for name, (mode, fix) in CASES.items():
        img, info[name] = upscale(lr, mode, fix, models)
        results[name] = img.contiguous()
        print(f"{name}: {tuple(img.shape)} range [{img.min():.4f}, {img.max():.4f}] sigmas[0] {info[name]['sigmas'][0]:.3f} "
              f"steps {len(info[name]['sigmas']) - 1}")
    names = list(CASES)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            d = (results[a] - results[b]).abs().max().item()
            print(f"  max |{a} - {b}| = {d:.4f}")
            assert d > 2 / 255, f"cases {a} and {b} are indistinguishable at the test's bound"
    from safetensors.torch import save_file
    meta = {"cases": json.dumps(CASES), "global_prompt": GLOBAL_PROMPT, "local_prompt": LOCAL_PROMPT,
            "seed": str(SEED), "without_lora_steps": str(WITHOUT_LORA_STEPS)}
    save_file(results, str(out / "expected.safetensors"), metadata=meta)
    total = sum(f.stat().st_size for f in out.iterdir())
    for f in sorted(out.iterdir()):
        print(f"{f.name}: {f.stat().st_size} bytes")
    print(f"total {total} bytes")


if __name__ == "__main__":
    main()
