#!/usr/bin/env python3
"""Writes full-size, seeded random weight files shaped exactly like the real ones, for full-depth runs, memory and
speed measurements without downloading 30 GB of weights (issue 14). Nothing here is committed: write under /tmp,
check, delete.

Pinned: gguf==0.19.0, numpy==2.4.6, ml_dtypes==0.7.0 (no torch). Install them in a venv:
    python3 -m venv /tmp/v && /tmp/v/bin/pip install gguf==0.19.0 numpy==2.4.6 ml_dtypes==0.7.0

usage: make_full_size_flux.py OUTDIR [--only KIND,...] [--seed N] [--depth N --depth-single N --controlnet-depth N]
                              [--t5-layers N]

Kinds (all by default; each is streamed tensor by tensor, peak memory ~1.5 GB, the largest tensor's temporaries):
  flux-bf16      flux1-dev-bf16.safetensors  FLUX.1-dev transformer, BFL names (`double_blocks.N.img_attn.qkv.weight`,
                 ...), 780 tensors, every one BF16 like Black Forest Labs' file (~23.8 GB).
  flux-q8_0      flux1-dev-Q8_0.gguf  GGUF v3 with the `model.diffusion_model.` prefix as stable-diffusion.cpp writes it;
                 2-D weights Q8_0 (quantized with gguf.quants.quantize, ggml's reference rounding), 1-D F32 (~12.7 GB).
  flux-q4_k      flux1-dev-Q4_K.gguf  bare BFL names as ComfyUI-GGUF writes them; 2-D weights whose rows are whole
                 256-value super-blocks Q4_K, the others (img_in: rows of 64) F16, 1-D F32 (~6.8 GB).
                 gguf.quants 0.19 cannot quantize Q4_K (only dequantize), so this script has its own simple Q4_K
                 quantizer: per 32-value sub-block scale = (max - min(min, 0)) / 15 and min = -min(min, 0), the 6-bit
                 scale / min codes relative to the super-block's fp16 d = max scale / 63 and dmin = max min / 63, then
                 q = round((x + dmin m) / (d sc)) clipped to 0..15, packed as ggml's block_q4_K (d, dmin, 12 bytes of
                 packed 6-bit scales/mins, 128 bytes of nibbles). Not ggml's optimising search, but a valid encoding of
                 the SAME weights as the other files (checked with gguf.quants.dequantize on the first tensor).
  flux-q6_k      flux1-dev-Q6_K.gguf  bare BFL names like flux-q4_k; 2-D weights whose rows are whole 256-value
                 super-blocks Q6_K, the others F16, 1-D F32 (~9.1 GiB expected: 210 bytes per 256 weights; not written at
                 full depth yet: the quantizer takes 0.26 s per 3072x3072 tensor, Q4_K's 0.21 s).
                 gguf.quants 0.19 cannot quantize Q6_K either: own simple quantizer, per 16-value sub-block scale
                 s = max|x| / 31, the super-block's fp16 d = max s / 127, int8 codes round(s / d), q = round(x / (d
                 code)) + 32 clipped to 0..63, packed as ggml's block_q6_K (ql[128] low nibbles, qh[64] high 2-bit
                 pairs, int8 scales[16], d); checked with gguf.quants.dequantize on the first tensor (error within one
                 step per sub-block; relative L2 1.9 % on it).
  flux-fp8       flux1-dev-fp8-scaled.safetensors  ComfyUI "scaled FP8": prefix `model.diffusion_model.`, 2-D weights
                 F8_E4M3 with a per-tensor F32 `scale_weight` = max|w| / 448, biases BF16, norm scales F32, the
                 `scaled_fp8` marker (~11.9 GB).
  t5-q8_0        t5xxl-Q8_0.gguf  T5 v1.1 XXL encoder (24 layers, d 4096, ff 10240, 64 heads, vocab 32128), HF names
                 (`encoder.block.N.layer.0.SelfAttention.q.weight`, `shared.weight`) as our T5 loader reads them;
                 2-D Q8_0, norms and the relative attention bias F32 (~5.0 GB).
  dreamsr        dreamsr-full.safetensors  a DreamSR checkpoint per ../shared/reference/dreamsr-architecture.md:
                 `dreamsr_config` metadata, the 9-block ControlNet in diffusers names (`controlnet.x_embedder`,
                 `controlnet.transformer_blocks.L.attn.to_q`, `controlnet_x_embedder`, `controlnet_img_mlps.L.fc1/fc2`,
                 `context_attn.L.{to_q,to_k,to_v,to_out,norm_q,norm_k}`), and the rank-256 LoRA (alpha 256) on every
                 Linear of the main double / single blocks (`transformer.transformer_blocks.N.<module>.lora_A/B.weight`)
                 and of the ControlNet blocks (`controlnet.transformer_blocks.L.<module>.lora_A/B.weight`); BF16.
  dreamsr-q8_0   dreamsr-full-Q8_0.gguf  the same DreamSR weights (same seeded values as `dreamsr`) as GGUF v3, the
                 same tensor names, `dreamsr_config` as a GGUF string key; 2-D weights Q8_0 where the row length is a
                 multiple of 32 (all of them at full size), else F16; 1-D F32. Loads with `DreamSRModel.load` like the
                 safetensors file, every Linear and LoRA matrix read in place.
  clip-l         clip-l.safetensors  CLIP-L text encoder (12 layers, d 768, MLP 3072, vocab 49408, 77 positions), HF
                 names under `text_model.` as our CLIP loader reads them (config from the shapes), F16, 123.06 M
                 params (~0.23 GiB). Always full size.
  vae            ae.safetensors  FLUX VAE in Black Forest Labs' names (`encoder.down.I.block.J`, `decoder.up.I`,
                 attention q/k/v/proj_out as 1x1 convs; channels 128/256/512/512, 16 latent channels), F32 like BFL's
                 file, 83.82 M params (~0.31 GiB). Convs std 1/sqrt(in k k), residual-branch output convs std as the
                 output projections below. Always full size.

Measured 2026-12-03 (2 cores shared with other builds; each file then opened by `dreamsr models check --weights F`
in < 0.6 s, and deleted):
  flux-q8_0  11.79 GiB  346 s  peak RSS 0.7 GB   GGUF v3, F32 x466, Q8_0 x314; 11.90 G params
  flux-q4_k   6.24 GiB  789 s  peak RSS 0.9 GB   GGUF v3, F32 x466, Q4_K x313, F16 x1; 11.90 G params
  flux-fp8   11.09 GiB  416 s  peak RSS 0.7 GB   safetensors, F32 x466, F8_E4M3 x315, BF16 x314 (F32 = norms + scales)
  flux-bf16  22.17 GiB  542 s  peak RSS 0.7 GB   safetensors, BF16 x780; 11.90 G params
  t5-q8_0     4.71 GiB  122 s  peak RSS 1.3 GB   GGUF v3, Q8_0 x169, F32 x50; 4.76 G params
  dreamsr     9.95 GiB  139 s  peak RSS 0.6 GB   safetensors, BF16 x1672; 5.34 G params
A full-width 1 double + 1 single block version (--depth 1 --depth-single 1 --controlnet-depth 1 --t5-layers 1) of
every kind loads in the engine (`dreamsr forward flux` on each FLUX file, `dreamsr-step` / `dreamsr-restore` with the
DreamSR file, `t5` with the T5 file); drift vs bf16 there: Q8_0 1.0 %, scaled FP8 4.6 %, Q4_K 12 % (relative L2).

The weights are the SAME in every FLUX file: each tensor is drawn from its own generator seeded by (seed, crc32 of
its BFL name), rounded to bf16 (the bf16 file holds them exactly), and the other files quantize those values, so the
drift between formats (issue 14 benchmark 4) is quantization drift only.

Scaling (why activations stay finite through 19 + 38 blocks): every block adds `gate * f(modulated LN(x))` to a
residual stream. Input projections (img_in, txt_in, embedders, mod.lin, qkv, mlp.0, linear1) use std 1/sqrt(fan_in),
which keeps their outputs O(1) for O(1) inputs (LayerNorm / RMSNorm make the inputs O(1) again in every block). Output
projections (attn proj, mlp.2, linear2, final_layer.linear; in DreamSR the image-MLP fc2 and context to_out) use std
0.02 / sqrt(57), so one block adds a residual update of std ~ sqrt(fan_in) * 0.02 / sqrt(57) ~ 0.15-0.3 times an
O(1) gate: after 57 blocks the stream has grown by ~sqrt(57) * 0.3 ~ 2, far from overflow in bf16 or float32, while
every layer still contributes (the output is not dominated by the input). Biases std 0.02, q/k norm scales 1 + 0.05 N.
LoRA: A std 1/sqrt(in), B std 0.02 / sqrt(57) / sqrt(256) (so B A adds a small, non-zero update per layer).
"""
import argparse
import json
import os
import struct
import sys
import time
import zlib

import gguf
import ml_dtypes
import numpy as np
from gguf import GGMLQuantizationType as T

D, MLP, HEAD, HEADS, IN_CH, CTX, VEC, TDIM = 3072, 12288, 128, 24, 64, 4096, 768, 256
TOTAL_DEPTH = 57
OUT_STD = 0.02 / np.sqrt(TOTAL_DEPTH)
COMFY = "model.diffusion_model."


# ---------------------------------------------------------------------------------------------------------- shapes

def flux_tensors(depth, depth_single, guidance=True):
    """(BFL name, row-major shape, kind) with kind in in/out/bias/norm; the order of Black Forest Labs' file does not
    matter to readers, so it follows the model."""
    out = []

    def lin(n, o, i, kind="in"):
        out.append((n + ".weight", (o, i), kind))
        out.append((n + ".bias", (o,), "bias"))

    lin("img_in", D, IN_CH)
    lin("txt_in", D, CTX)
    lin("time_in.in_layer", D, TDIM); lin("time_in.out_layer", D, D)
    if guidance:
        lin("guidance_in.in_layer", D, TDIM); lin("guidance_in.out_layer", D, D)
    lin("vector_in.in_layer", D, VEC); lin("vector_in.out_layer", D, D)
    for i in range(depth):
        p = f"double_blocks.{i}."
        for s in ("img", "txt"):
            lin(p + f"{s}_mod.lin", 6 * D, D)
            lin(p + f"{s}_attn.qkv", 3 * D, D)
            out.append((p + f"{s}_attn.norm.query_norm.scale", (HEAD,), "norm"))
            out.append((p + f"{s}_attn.norm.key_norm.scale", (HEAD,), "norm"))
            lin(p + f"{s}_attn.proj", D, D, "out")
            lin(p + f"{s}_mlp.0", MLP, D)
            lin(p + f"{s}_mlp.2", D, MLP, "out")
    for i in range(depth_single):
        p = f"single_blocks.{i}."
        lin(p + "modulation.lin", 3 * D, D)
        lin(p + "linear1", 3 * D + MLP, D)
        out.append((p + "norm.query_norm.scale", (HEAD,), "norm"))
        out.append((p + "norm.key_norm.scale", (HEAD,), "norm"))
        lin(p + "linear2", D, D + MLP, "out")
    lin("final_layer.adaLN_modulation.1", 2 * D, D)
    lin("final_layer.linear", IN_CH, D, "out")
    return out


def t5_tensors(layers=24, d=4096, ff=10240, heads=64, vocab=32128, buckets=32):
    out = [("shared.weight", (vocab, d), "embed")]
    for i in range(layers):
        p = f"encoder.block.{i}.layer."
        for m in "qkv":
            out.append((p + f"0.SelfAttention.{m}.weight", (d, d), "in"))
        out.append((p + "0.SelfAttention.o.weight", (d, d), "out"))
        if i == 0:
            out.append((p + "0.SelfAttention.relative_attention_bias.weight", (buckets, heads), "bias"))
        out.append((p + "0.layer_norm.weight", (d,), "norm"))
        out.append((p + "1.DenseReluDense.wi_0.weight", (ff, d), "in"))
        out.append((p + "1.DenseReluDense.wi_1.weight", (ff, d), "in"))
        out.append((p + "1.DenseReluDense.wo.weight", (d, ff), "out"))
        out.append((p + "1.layer_norm.weight", (d,), "norm"))
    out.append(("encoder.final_layer_norm.weight", (d,), "norm"))
    return out


def clip_l_tensors(layers=12, d=768, ff=3072, vocab=49408, positions=77):
    """CLIP-L text encoder (FLUX's text_encoder/model.safetensors), HF names under `text_model.`."""
    out = [("text_model.embeddings.token_embedding.weight", (vocab, d), "embed"),
           ("text_model.embeddings.position_embedding.weight", (positions, d), "embed")]

    def lin(n, o, i, kind="in"):
        out.append((n + ".weight", (o, i), kind))
        out.append((n + ".bias", (o,), "bias"))

    def ln(n):
        out.append((n + ".weight", (d,), "norm"))
        out.append((n + ".bias", (d,), "bias"))

    for i in range(layers):
        p = f"text_model.encoder.layers.{i}."
        ln(p + "layer_norm1")
        for m in ("q_proj", "k_proj", "v_proj"):
            lin(p + "self_attn." + m, d, d)
        lin(p + "self_attn.out_proj", d, d, "out")
        ln(p + "layer_norm2")
        lin(p + "mlp.fc1", ff, d)
        lin(p + "mlp.fc2", d, ff, "out")
    ln("text_model.final_layer_norm")
    return out


def vae_tensors(ch=128, mult=(1, 2, 4, 4), blocks=2, z=16):
    """FLUX VAE in Black Forest Labs' ae.safetensors names (`encoder.down.I.block.J`, `decoder.up.I` with I = 3 the
    lowest resolution, attention q/k/v/proj_out as 1x1 convs), as our VAE loader reads them (config from shapes)."""
    out = []

    def conv(n, o, i, k=3, kind="conv"):
        out.append((n + ".weight", (o, i, k, k), kind))
        out.append((n + ".bias", (o,), "bias"))

    def norm(n, c):
        out.append((n + ".weight", (c,), "norm"))
        out.append((n + ".bias", (c,), "bias"))

    def res(p, i, o):
        norm(p + ".norm1", i); conv(p + ".conv1", o, i); norm(p + ".norm2", o); conv(p + ".conv2", o, o, kind="conv_out")
        if i != o:
            conv(p + ".nin_shortcut", o, i, 1)

    def mid(p, c):
        res(p + ".mid.block_1", c, c)
        norm(p + ".mid.attn_1.norm", c)
        for n in ("q", "k", "v"):
            conv(p + f".mid.attn_1.{n}", c, c, 1)
        conv(p + ".mid.attn_1.proj_out", c, c, 1, kind="conv_out")
        res(p + ".mid.block_2", c, c)

    chs = [ch * m for m in mult]
    conv("encoder.conv_in", chs[0], 3)
    prev = chs[0]
    for i, c in enumerate(chs):
        for j in range(blocks):
            res(f"encoder.down.{i}.block.{j}", prev if j == 0 else c, c)
        if i < len(chs) - 1:
            conv(f"encoder.down.{i}.downsample.conv", c, c)
        prev = c
    mid("encoder", chs[-1])
    norm("encoder.norm_out", chs[-1])
    conv("encoder.conv_out", 2 * z, chs[-1])
    conv("decoder.conv_in", chs[-1], z)
    mid("decoder", chs[-1])
    prev = chs[-1]
    for i in reversed(range(len(chs))):
        for j in range(blocks + 1):
            res(f"decoder.up.{i}.block.{j}", prev if j == 0 else chs[i], chs[i])
        if i > 0:
            conv(f"decoder.up.{i}.upsample.conv", chs[i], chs[i])
        prev = chs[i]
    norm("decoder.norm_out", chs[0])
    conv("decoder.conv_out", 3, chs[0])
    return out


# diffusers modules of a double block (and their shapes), and of a single block, that carry LoRA
DOUBLE_MODULES = [("norm1.linear", 6 * D, D), ("norm1_context.linear", 6 * D, D),
                  ("attn.to_q", D, D), ("attn.to_k", D, D), ("attn.to_v", D, D),
                  ("attn.add_q_proj", D, D), ("attn.add_k_proj", D, D), ("attn.add_v_proj", D, D),
                  ("attn.to_out.0", D, D), ("attn.to_add_out", D, D),
                  ("ff.net.0.proj", MLP, D), ("ff.net.2", D, MLP),
                  ("ff_context.net.0.proj", MLP, D), ("ff_context.net.2", D, MLP)]
OUT_MODULES = {"attn.to_out.0", "attn.to_add_out", "ff.net.2", "ff_context.net.2"}
SINGLE_MODULES = [("norm.linear", 3 * D, D), ("attn.to_q", D, D), ("attn.to_k", D, D), ("attn.to_v", D, D),
                  ("proj_mlp", MLP, D), ("proj_out", D, D + MLP)]


def dreamsr_tensors(depth, depth_single, cn_depth, rank=256, guidance=True):
    out = []
    c = "controlnet."

    def lin(n, o, i, kind="in"):
        out.append((n + ".weight", (o, i), kind))
        out.append((n + ".bias", (o,), "bias"))

    lin(c + "x_embedder", D, IN_CH)
    lin(c + "context_embedder", D, CTX)
    te = c + "time_text_embed."
    lin(te + "timestep_embedder.linear_1", D, TDIM); lin(te + "timestep_embedder.linear_2", D, D)
    if guidance:
        lin(te + "guidance_embedder.linear_1", D, TDIM); lin(te + "guidance_embedder.linear_2", D, D)
    lin(te + "text_embedder.linear_1", D, VEC); lin(te + "text_embedder.linear_2", D, D)
    for l in range(cn_depth):
        p = c + f"transformer_blocks.{l}."
        for m, o, i in DOUBLE_MODULES:
            lin(p + m, o, i, "out" if m in OUT_MODULES else "in")
        for n in ("norm_q", "norm_k", "norm_added_q", "norm_added_k"):
            out.append((p + f"attn.{n}.weight", (HEAD,), "norm"))
    lin(c + "controlnet_x_embedder", D, IN_CH, "out")  # zero-initialised when trained from scratch; small here
    for l in range(cn_depth):
        lin(c + f"controlnet_img_mlps.{l}.fc1", D, D)
        lin(c + f"controlnet_img_mlps.{l}.fc2", D, D, "out")
        q = c + f"context_attn.{l}."
        for m in ("to_q", "to_k", "to_v"):
            lin(q + m, D, D)
        lin(q + "to_out", D, D, "out")
        out.append((q + "norm_q.weight", (HEAD,), "norm"))
        out.append((q + "norm_k.weight", (HEAD,), "norm"))

    def lora(module, o, i):
        out.append((module + ".lora_A.weight", (rank, i), "lora_a"))
        out.append((module + ".lora_B.weight", (o, rank), "lora_b"))

    for n in range(depth):
        for m, o, i in DOUBLE_MODULES:
            lora(f"transformer.transformer_blocks.{n}.{m}", o, i)
    for n in range(depth_single):
        for m, o, i in SINGLE_MODULES:
            lora(f"transformer.single_transformer_blocks.{n}.{m}", o, i)
    for l in range(cn_depth):
        for m, o, i in DOUBLE_MODULES:
            lora(c + f"transformer_blocks.{l}.{m}", o, i)
    return out


# ---------------------------------------------------------------------------------------------------------- values

def values(seed, name, shape, kind):
    """The tensor's float32 values (bf16-exact), from its own generator."""
    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    if kind == "norm":
        x = 1 + 0.05 * rng.standard_normal(shape, dtype=np.float32)
    elif kind == "bias":
        x = 0.02 * rng.standard_normal(shape, dtype=np.float32)
    elif kind == "out":
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(OUT_STD)
    elif kind == "lora_b":
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(OUT_STD / 16)
    elif kind == "embed":
        x = rng.standard_normal(shape, dtype=np.float32)
    elif kind in ("conv", "conv_out"):  # [out, in, k, k]: fan-in in * k * k; conv_out like the output projections
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(OUT_STD if kind == "conv_out" else 1 / np.sqrt(np.prod(shape[1:])))
    else:  # in, lora_a: fan-in scaled
        x = rng.standard_normal(shape, dtype=np.float32)
        x *= np.float32(1 / np.sqrt(shape[-1]))
    return x.astype(ml_dtypes.bfloat16).astype(np.float32)


# ---------------------------------------------------------------------------------------------------------- Q4_K

def quantize_q4_k(x):
    """x: float32 [rows, cols], cols % 256 == 0 -> uint8 [rows, cols / 256 * 144] (ggml block_q4_K)."""
    rows, cols = x.shape
    nb = rows * cols // 256
    sb = x.reshape(nb, 8, 32)
    lo = np.minimum(sb.min(axis=2), 0)                  # [nb, 8]
    hi = sb.max(axis=2)
    scale = (hi - lo) / 15
    mn = -lo
    d = (scale.max(axis=1) / 63).astype(np.float16)     # [nb]
    dmin = (mn.max(axis=1) / 63).astype(np.float16)
    df, dminf = d.astype(np.float32), dmin.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df[:, None] > 0, np.rint(scale / df[:, None]), 0)
        m = np.where(dminf[:, None] > 0, np.rint(mn / dminf[:, None]), 0)
    sc = np.clip(sc, 0, 63).astype(np.uint8)
    m = np.clip(m, 0, 63).astype(np.uint8)
    eff_scale = df[:, None] * sc.astype(np.float32)      # [nb, 8]
    eff_min = dminf[:, None] * m.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(eff_scale[:, :, None] > 0, np.rint((sb + eff_min[:, :, None]) / eff_scale[:, :, None]), 0)
    q = np.clip(q, 0, 15).astype(np.uint8)               # [nb, 8, 32]
    # 12 bytes of 6-bit scales and mins (ggml get_scale_min_k4 inverse)
    packed = np.zeros((nb, 12), dtype=np.uint8)
    packed[:, 0:4] = sc[:, 0:4] | ((sc[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = m[:, 0:4] | ((m[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (sc[:, 4:8] & 0x0F) | ((m[:, 4:8] & 0x0F) << 4)
    # nibbles: 4 chunks of 64 values; byte l of chunk j = q[2j][l] | q[2j+1][l] << 4
    qs = (q[:, 0::2, :] | (q[:, 1::2, :] << 4)).reshape(nb, 128)
    blocks = np.concatenate([d.view(np.uint8).reshape(nb, 2), dmin.view(np.uint8).reshape(nb, 2), packed, qs], axis=1)
    return blocks.reshape(rows, cols // 256 * 144)


# ---------------------------------------------------------------------------------------------------------- Q6_K

def quantize_q6_k(x):
    """x: float32 [rows, cols], cols % 256 == 0 -> uint8 [rows, cols / 256 * 210] (ggml block_q6_K: ql[128], qh[64],
    int8 scales[16], fp16 d). Per 16-value sub-block scale s = max|x| / 31, the super-block's d = max s / 127, the
    int8 code round(s / d), then q = round(x / (d code)) + 32 clipped to 0..63 (value = d code (q - 32))."""
    rows, cols = x.shape
    nb = rows * cols // 256
    sb = x.reshape(nb, 16, 16)
    s = np.abs(sb).max(axis=2) / 31                       # [nb, 16]
    d = (s.max(axis=1) / 127).astype(np.float16)          # [nb]
    df = d.astype(np.float32)
    with np.errstate(divide="ignore", invalid="ignore"):
        sc = np.where(df[:, None] > 0, np.rint(s / df[:, None]), 0)
    sc = np.clip(sc, -128, 127).astype(np.int8)
    eff = df[:, None] * sc.astype(np.float32)             # [nb, 16]
    with np.errstate(divide="ignore", invalid="ignore"):
        q = np.where(eff[:, :, None] > 0, np.rint(sb / eff[:, :, None]), 0) + 32
    q = np.clip(q, 0, 63).astype(np.uint8).reshape(nb, 2, 128)
    # value i of a 128-value half: low nibble in ql[half][i % 64] (bits 4 * (i // 64)), high 2 bits in
    # qh[half][i % 32] (bits 2 * (i // 32)) -- the inverse of ggml's dequantize_row_q6_K
    ql = ((q[:, :, :64] & 0x0F) | ((q[:, :, 64:] & 0x0F) << 4)).reshape(nb, 128)
    hi = ((q >> 4) & 0x03).reshape(nb, 2, 4, 32)
    qh = (hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)).reshape(nb, 64)
    blocks = np.concatenate([ql, qh, sc.view(np.uint8), d.view(np.uint8).reshape(nb, 2)], axis=1)
    return blocks.reshape(rows, cols // 256 * 210)


def check_q6_k(seed):
    """Our Q6_K encoding decodes (gguf.quants.dequantize) to the weights within half a quantization step (plus the
    rounding of the int8 sub-block scale)."""
    name, shape, kind = "double_blocks.0.img_attn.qkv.weight", (64, D), "in"
    x = values(seed, name, shape, kind)
    back = gguf.quants.dequantize(quantize_q6_k(x), T.Q6_K)
    assert back.shape == x.shape, back.shape
    step = np.abs(x).reshape(-1, 16).max(axis=1) / 31
    err = np.abs(back - x).reshape(-1, 16).max(axis=1)
    assert (err <= step + 1e-7).all(), (err / step).max()
    rel = np.linalg.norm(back - x) / np.linalg.norm(x)
    print(f"Q6_K self-check: relative L2 error {rel:.4f} on {name} [64, {D}]", flush=True)
    assert rel < 0.03, rel


# ---------------------------------------------------------------------------------------------------------- writers

def write_gguf(path, entries, encode, arch, strings=None):
    """entries: (name, shape, kind); encode(name, shape, kind) -> (numpy array to write, raw ggml type or None);
    strings: extra string metadata keys."""
    w = gguf.GGUFWriter(path, arch)
    w.add_string("general.name", f"dreamsr random {arch}")
    for k, v in (strings or {}).items():
        w.add_string(k, v)
    plan = []
    for name, shape, kind in entries:
        t = encode.type_of(shape, kind)
        if t in (T.F32, T.F16):
            dt = np.dtype(np.float32 if t == T.F32 else np.float16)
            w.add_tensor_info(name, shape, dt, int(np.prod(shape)) * dt.itemsize)
        else:
            bs, ts = gguf.constants.GGML_QUANT_SIZES[t]
            rows, cols = int(np.prod(shape[:-1])), shape[-1]
            w.add_tensor_info(name, (*shape[:-1], cols // bs * ts), np.dtype(np.uint8), rows * cols // bs * ts, raw_dtype=t)
        plan.append((name, shape, kind, t))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    for name, shape, kind, t in plan:
        w.write_tensor_data(encode(name, shape, kind, t))
    w.close()


def write_safetensors(path, entries, encode, metadata):
    """Streams a safetensors file: header from the shapes and dtypes, then each tensor's bytes in order."""
    header, off, plan = {}, 0, []
    if metadata:
        header["__metadata__"] = metadata
    for name, shape, kind in entries:
        for n, s, dt, nbytes, part in encode.layout(name, shape, kind):
            header[n] = {"dtype": dt, "shape": list(s), "data_offsets": [off, off + nbytes]}
            off += nbytes
            plan.append((n, s, kind, part, name, shape))
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        cache = {}
        for n, s, kind, part, src, shape in plan:
            if src not in cache:
                cache = {src: encode(src, shape, kind)}
            data = cache[src][part]
            f.write(data)


class GGUFEncoding:
    def __init__(self, seed, qtype, prefix):
        self.seed, self.qtype, self.prefix = seed, qtype, prefix

    def type_of(self, shape, kind):
        if len(shape) == 1 or kind in ("bias", "norm"):
            return T.F32
        bs = gguf.constants.GGML_QUANT_SIZES[self.qtype][0]
        return self.qtype if shape[-1] % bs == 0 else T.F16

    def __call__(self, name, shape, kind, t):
        x = values(self.seed, name[len(self.prefix):], shape, kind)
        if t == T.F32:
            return x
        if t == T.F16:
            return x.astype(np.float16)
        if t == T.Q4_K:
            return quantize_q4_k(x.reshape(-1, shape[-1]))
        if t == T.Q6_K:
            return quantize_q6_k(x.reshape(-1, shape[-1]))
        return gguf.quants.quantize(x, t)


class SafetensorsEncoding:
    """`bf16` / `f16` / `f32`: every tensor in that type. `fp8`: ComfyUI scaled FP8 (2-D F8_E4M3 + scale_weight;
    biases BF16; norms F32)."""

    def __init__(self, seed, mode, prefix):
        self.seed, self.mode, self.prefix = seed, mode, prefix

    def layout(self, name, shape, kind):
        n = int(np.prod(shape))
        if self.mode in ("bf16", "f16", "f32"):
            return [(name, shape, self.mode.upper(), n * (4 if self.mode == "f32" else 2), "w")]
        if len(shape) == 2:
            stem = name[:-len("weight")]
            return [(name, shape, "F8_E4M3", n, "w"), (stem + "scale_weight", (), "F32", 4, "scale")]
        if kind == "bias":
            return [(name, shape, "BF16", n * 2, "w")]
        return [(name, shape, "F32", n * 4, "w")]

    def __call__(self, name, shape, kind):
        x = values(self.seed, name[len(self.prefix):], shape, kind)
        if self.mode == "bf16":
            return {"w": x.astype(ml_dtypes.bfloat16).tobytes()}
        if self.mode == "f16":
            return {"w": x.astype(np.float16).tobytes()}
        if self.mode == "f32":
            return {"w": x.tobytes()}
        if len(shape) == 2:
            scale = np.float32(np.abs(x).max() / 448)
            return {"w": (x / scale).astype(ml_dtypes.float8_e4m3fn).tobytes(), "scale": scale.tobytes()}
        if kind == "bias":
            return {"w": x.astype(ml_dtypes.bfloat16).tobytes()}
        return {"w": x.tobytes()}


def check_q4_k(seed):
    """Our Q4_K encoding decodes (gguf.quants.dequantize) to the weights within half a quantization step."""
    name, shape, kind = "double_blocks.0.img_attn.qkv.weight", (64, D), "in"
    x = values(seed, name, shape, kind)
    q = quantize_q4_k(x)
    back = gguf.quants.dequantize(q, T.Q4_K)
    sb = x.reshape(-1, 32)
    step = (sb.max(axis=1) - np.minimum(sb.min(axis=1), 0)) / 15
    err = np.abs(back - x).reshape(-1, 32).max(axis=1)
    # half a step from rounding q, plus the rounding of the 6-bit scale / min codes: within one step
    assert (err <= step + 1e-7).all(), (err / step).max()
    rel = np.linalg.norm(back - x) / np.linalg.norm(x)
    print(f"Q4_K self-check: relative L2 error {rel:.4f} on {name} [64, {D}]", flush=True)
    assert rel < 0.15, rel


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outdir")
    ap.add_argument("--only", default="flux-bf16,flux-q8_0,flux-q6_k,flux-q4_k,flux-fp8,t5-q8_0,dreamsr,clip-l,vae",
                    help="comma-separated kinds; dreamsr-q8_0 is written only when named")
    ap.add_argument("--seed", type=int, default=14)
    ap.add_argument("--depth", type=int, default=19, help="double blocks (19; fewer for quick full-width checks)")
    ap.add_argument("--depth-single", type=int, default=38)
    ap.add_argument("--controlnet-depth", type=int, default=9)
    ap.add_argument("--t5-layers", type=int, default=24)
    a = ap.parse_args()
    os.makedirs(a.outdir, exist_ok=True)
    flux = flux_tensors(a.depth, a.depth_single)
    dreamsr_config = json.dumps({"controlnet_depth": a.controlnet_depth, "lora_rank": 256, "lora_alpha": 256})
    jobs = {
        "flux-bf16": ("flux1-dev-bf16.safetensors", lambda p: write_safetensors(
            p, flux, SafetensorsEncoding(a.seed, "bf16", ""), {"format": "pt"})),
        "flux-q8_0": ("flux1-dev-Q8_0.gguf", lambda p: write_gguf(
            p, [(COMFY + n, s, k) for n, s, k in flux], GGUFEncoding(a.seed, T.Q8_0, COMFY), "flux")),
        "flux-q4_k": ("flux1-dev-Q4_K.gguf", lambda p: (check_q4_k(a.seed), write_gguf(
            p, flux, GGUFEncoding(a.seed, T.Q4_K, ""), "flux"))),
        "flux-q6_k": ("flux1-dev-Q6_K.gguf", lambda p: (check_q6_k(a.seed), write_gguf(
            p, flux, GGUFEncoding(a.seed, T.Q6_K, ""), "flux"))),
        "flux-fp8": ("flux1-dev-fp8-scaled.safetensors", lambda p: write_safetensors(
            p, [(COMFY + n, s, k) for n, s, k in flux] + [(COMFY + "scaled_fp8", (0,), "marker")],
            MarkerAware(SafetensorsEncoding(a.seed, "fp8", COMFY)), None)),
        "t5-q8_0": ("t5xxl-Q8_0.gguf", lambda p: write_gguf(
            p, t5_tensors(a.t5_layers), GGUFEncoding(a.seed, T.Q8_0, ""), "t5encoder")),
        "dreamsr": ("dreamsr-full.safetensors", lambda p: write_safetensors(
            p, dreamsr_tensors(a.depth, a.depth_single, a.controlnet_depth),
            SafetensorsEncoding(a.seed, "bf16", ""), {"dreamsr_config": dreamsr_config})),
        "dreamsr-q8_0": ("dreamsr-full-Q8_0.gguf", lambda p: write_gguf(
            p, dreamsr_tensors(a.depth, a.depth_single, a.controlnet_depth),
            GGUFEncoding(a.seed, T.Q8_0, ""), "dreamsr", {"dreamsr_config": dreamsr_config})),
        "clip-l": ("clip-l.safetensors", lambda p: write_safetensors(
            p, clip_l_tensors(), SafetensorsEncoding(a.seed, "f16", ""), {"format": "pt"})),
        "vae": ("ae.safetensors", lambda p: write_safetensors(
            p, vae_tensors(), SafetensorsEncoding(a.seed, "f32", ""), {"format": "pt"})),
    }
    for kind in a.only.split(","):
        if kind not in jobs:
            sys.exit(f"unknown kind {kind!r}; known: {', '.join(jobs)}")
        fname, job = jobs[kind]
        path = os.path.join(a.outdir, fname)
        t0 = time.time()
        job(path)
        print(f"{kind}: {path} {os.path.getsize(path) / 2**30:.2f} GiB in {time.time() - t0:.0f} s", flush=True)


class MarkerAware:
    """Adds the empty `scaled_fp8` marker tensor (F8_E4M3, shape [0]) to an FP8 encoding."""

    def __init__(self, inner):
        self.inner = inner

    def layout(self, name, shape, kind):
        if kind == "marker":
            return [(name, shape, "F8_E4M3", 0, "w")]
        return self.inner.layout(name, shape, kind)

    def __call__(self, name, shape, kind):
        if kind == "marker":
            return {"w": b""}
        return self.inner(name, shape, kind)


if __name__ == "__main__":
    main()
