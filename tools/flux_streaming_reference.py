#!/usr/bin/env python3
"""PyTorch-free float32 reference of ONE FLUX transformer forward that streams the weights: each tensor is read from
the memory-mapped file and dequantized (gguf.quants.dequantize for GGUF block types, exact decoding for
safetensors BF16 / F16 / FP8 incl. ComfyUI `scale_weight`) when its layer runs, and dropped after, so a full-size
FLUX.1-dev forward (12 B parameters) fits in a few GB. The math follows ../shared/reference/flux-and-tiling-spec.md
§1 (BFL names; sections cited inline), all in float32 (numpy; matmuls through numpy's BLAS).

Pinned: gguf==0.19.0, numpy==2.4.6, ml_dtypes==0.7.0 (as tools/make_gguf_fixtures.py).

usage: flux_streaming_reference.py WEIGHTS (.gguf | .safetensors) INPUTS.safetensors OUT.safetensors [--compare F]
  INPUTS / OUT use the `dreamsr forward flux` names: hidden_states [B,L,C], encoder_hidden_states [B,T,Dtxt],
  pooled_projections [B,Dpool], timestep [B] (sigma), guidance [B] (dev), img_ids [L,3], txt_ids [T,3] -> sample.
  --compare F: prints the relative L2 norm and max |a-b| / max |b| of `sample` against F's `sample` (e.g. the output
  of `dreamsr forward flux` on the same file and inputs) and exits 1 when the relative L2 exceeds --tolerance.

Checked against the engine's float32 forward on the tiny committed model:
  python3 tools/flux_streaming_reference.py Tests/Fixtures/flux/gguf/flux-q8_0.gguf \\
      Tests/Fixtures/flux/guidance/inputs_b2.safetensors /tmp/ref.safetensors --compare /tmp/ours.safetensors
  (relative L2 6e-6; on guidance/flux-bfl.safetensors vs diffusers' outputs_b2.safetensors: 5.8e-6.)
Full depth (measured 2026-12-03, 2 busy cores): tools/make_full_size_flux.py --only flux-q8_0, 16 image + 8 text
tokens: this script 139 s, `dreamsr forward flux` (float32, config inferred) 149 s, relative L2 1.66e-5; the
residual stream stays at max |x| 5-6 through all 57 blocks. Peak RSS of both ~12.6 GB is the file's mapped pages
(reclaimable page cache, not copies); the arrays themselves stay under ~1 GB.
"""
import argparse
import json
import os
import re
import struct
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from make_gguf_fixtures import safetensors_bytes  # noqa: E402  (also installs the pinned packages)

import gguf  # noqa: E402
import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402

ST_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16,
             "F8_E4M3": ml_dtypes.float8_e4m3fn, "F8_E5M2": ml_dtypes.float8_e5m2}
F32 = np.float32


class SafeTensors:
    def __init__(self, path):
        self.mm = np.memmap(path, dtype=np.uint8, mode="r")
        (n,) = struct.unpack("<Q", self.mm[:8].tobytes())
        self.header = json.loads(self.mm[8:8 + n].tobytes())
        self.header.pop("__metadata__", None)
        self.base = 8 + n

    def names(self):
        return list(self.header)

    def shape(self, name):
        return tuple(self.header[name]["shape"])

    def get(self, name):
        e = self.header[name]
        b, end = e["data_offsets"]
        raw = np.asarray(self.mm[self.base + b:self.base + end])
        x = raw.view(ST_DTYPES[e["dtype"]]).reshape(e["shape"]).astype(F32)
        stem = name[:-len("weight")] if name.endswith("weight") else None
        if e["dtype"].startswith("F8_") and stem is not None and stem + "scale_weight" in self.header:
            x *= self.get(stem + "scale_weight").reshape(())
        return x


class GGUF:
    def __init__(self, path):
        self.r = gguf.GGUFReader(path)
        self.t = {t.name: t for t in self.r.tensors}

    def names(self):
        return list(self.t)

    def shape(self, name):
        return tuple(int(d) for d in reversed(self.t[name].shape))

    def get(self, name):
        t = self.t[name]
        x = gguf.quants.dequantize(np.asarray(t.data), t.tensor_type)
        return np.ascontiguousarray(x, dtype=F32).reshape(self.shape(name))


class Weights:
    """BFL names over a file with any prefix (`model.diffusion_model.` or none)."""

    def __init__(self, path):
        self.f = GGUF(path) if path.endswith(".gguf") else SafeTensors(path)
        anchor = [n for n in self.f.names() if n == "img_in.weight" or n.endswith(".img_in.weight")]
        if not anchor:
            sys.exit(f"{path}: no img_in.weight (not a BFL / ComfyUI FLUX file)")
        self.prefix = min(anchor, key=len)[:-len("img_in.weight")]
        self.loaded = 0

    def __call__(self, name):
        self.loaded += 1
        return self.f.get(self.prefix + name)

    def has(self, name):
        return self.prefix + name in self.f.names()

    def shape(self, name):
        return self.f.shape(self.prefix + name)

    def config(self):
        names = [n[len(self.prefix):] for n in self.f.names() if n.startswith(self.prefix)]

        def count(p):
            idx = {int(m.group(1)) for n in names for m in [re.match(p + r"\.(\d+)\.", n)] if m}
            return max(idx) + 1 if idx else 0

        hidden = self.shape("img_in.weight")[0]
        head_dim = self.shape("double_blocks.0.img_attn.norm.query_norm.scale")[0] if count("double_blocks") else \
            self.shape("single_blocks.0.norm.query_norm.scale")[0]
        a0 = head_dim // 8
        a1 = (head_dim - a0) // 2
        return dict(depth=count("double_blocks"), depth_single=count("single_blocks"), hidden=hidden,
                    heads=hidden // head_dim, head_dim=head_dim, guidance=self.has("guidance_in.in_layer.weight"),
                    timestep_dim=self.shape("time_in.in_layer.weight")[1], axes=[a0, a1, head_dim - a0 - a1])


def linear(w, name, x):
    y = x @ w(name + ".weight").T
    y += w(name + ".bias")
    return y


def silu(x):
    return x / (F32(1) + np.exp(-x))


def gelu_tanh(x):
    return F32(0.5) * x * (F32(1) + np.tanh(F32(np.sqrt(2 / np.pi)) * (x + F32(0.044715) * x * x * x)))


def layer_norm(x, eps=1e-6):
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    return xc / np.sqrt(var + F32(eps))


def modulated(x, shift, scale):  # §1.3
    return layer_norm(x) * (F32(1) + scale) + shift


def timestep_embedding(t, dim):  # §1.2: cos first, input times 1000
    half = dim // 2
    freqs = np.exp(-np.log(10000.0) * np.arange(half, dtype=np.float64) / half).astype(F32)
    a = F32(1000 * t) * freqs
    return np.concatenate([np.cos(a), np.sin(a)]).astype(F32)


def mlp_embedder(w, name, x):
    return linear(w, name + ".out_layer", silu(linear(w, name + ".in_layer", x)))


def rope_tables(ids, axes, theta=10000.0):  # §1.7: interleaved pairs, one block of pairs per axis
    angles = []
    for a, d in enumerate(axes):
        omega = theta ** (-np.arange(0, d, 2, dtype=np.float64) / d)
        angles.append(ids[:, a:a + 1].astype(np.float64) * omega[None, :])
    ang = np.concatenate(angles, axis=1)
    return np.cos(ang).astype(F32), np.sin(ang).astype(F32)


def apply_rope(x, cos, sin):  # x [L, H, hd]
    x0, x1 = x[..., 0::2], x[..., 1::2]
    c, s = cos[:, None, :], sin[:, None, :]
    out = np.empty_like(x)
    out[..., 0::2] = c * x0 - s * x1
    out[..., 1::2] = s * x0 + c * x1
    return out


def rms_norm(x, scale, eps=1e-6):  # §1.4.3 over the head dim
    return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + F32(eps)) * scale


def attention(q, k, v):  # [L, H, hd] each; softmax(q k^T / sqrt(hd)) v, no mask
    hd = q.shape[-1]
    out = np.empty_like(q)
    for h in range(q.shape[1]):
        s = (q[:, h, :] @ k[:, h, :].T) * F32(1 / np.sqrt(hd))
        s -= s.max(axis=1, keepdims=True)
        p = np.exp(s)
        p /= p.sum(axis=1, keepdims=True)
        out[:, h, :] = p @ v[:, h, :]
    return out.reshape(q.shape[0], -1)


def qkv_heads(w, qkv, d, heads, hd, norm_prefix):
    q = qkv[:, :d].reshape(-1, heads, hd)
    k = qkv[:, d:2 * d].reshape(-1, heads, hd)
    v = qkv[:, 2 * d:3 * d].reshape(-1, heads, hd)
    q = rms_norm(q, w(norm_prefix + ".query_norm.scale"))
    k = rms_norm(k, w(norm_prefix + ".key_norm.scale"))
    return q, k, v


def forward_item(w, c, hs, ehs, pooled, t, g, img_ids, txt_ids, log):
    d, heads, hd = c["hidden"], c["heads"], c["head_dim"]
    vec = mlp_embedder(w, "time_in", timestep_embedding(t, c["timestep_dim"])[None])
    if c["guidance"]:
        vec = vec + mlp_embedder(w, "guidance_in", timestep_embedding(g, c["timestep_dim"])[None])
    vec = vec + mlp_embedder(w, "vector_in", pooled[None])
    sv = silu(vec)                                                                   # [1, d]
    cos, sin = rope_tables(np.concatenate([txt_ids, img_ids]), c["axes"])
    img = linear(w, "img_in", hs)
    txt = linear(w, "txt_in", ehs)
    lt = txt.shape[0]
    for i in range(c["depth"]):                                                      # §1.4
        p = f"double_blocks.{i}."
        im = np.split(linear(w, p + "img_mod.lin", sv)[0], 6)
        tm = np.split(linear(w, p + "txt_mod.lin", sv)[0], 6)
        iq, ik, iv = qkv_heads(w, linear(w, p + "img_attn.qkv", modulated(img, im[0], im[1])), d, heads, hd, p + "img_attn.norm")
        tq, tk, tv = qkv_heads(w, linear(w, p + "txt_attn.qkv", modulated(txt, tm[0], tm[1])), d, heads, hd, p + "txt_attn.norm")
        q = apply_rope(np.concatenate([tq, iq]), cos, sin)
        k = apply_rope(np.concatenate([tk, ik]), cos, sin)
        a = attention(q, k, np.concatenate([tv, iv]))
        img = img + im[2] * linear(w, p + "img_attn.proj", a[lt:])
        img = img + im[5] * linear(w, p + "img_mlp.2", gelu_tanh(linear(w, p + "img_mlp.0", modulated(img, im[3], im[4]))))
        txt = txt + tm[2] * linear(w, p + "txt_attn.proj", a[:lt])
        txt = txt + tm[5] * linear(w, p + "txt_mlp.2", gelu_tanh(linear(w, p + "txt_mlp.0", modulated(txt, tm[3], tm[4]))))
        log(f"double block {i}: |img| {np.abs(img).max():.3g}")
    x = np.concatenate([txt, img])
    for i in range(c["depth_single"]):                                               # §1.5
        p = f"single_blocks.{i}."
        m = np.split(linear(w, p + "modulation.lin", sv)[0], 3)
        h = linear(w, p + "linear1", modulated(x, m[0], m[1]))
        q, k, v = qkv_heads(w, h, d, heads, hd, p + "norm")
        a = attention(apply_rope(q, cos, sin), apply_rope(k, cos, sin), v)
        x = x + m[2] * linear(w, p + "linear2", np.concatenate([a, gelu_tanh(h[:, 3 * d:])], axis=1))
        log(f"single block {i}: |x| {np.abs(x).max():.3g}")
    fm = np.split(linear(w, "final_layer.adaLN_modulation.1", sv)[0], 2)           # §1.6: shift, scale
    return linear(w, "final_layer.linear", modulated(x[lt:], fm[0], fm[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("weights")
    ap.add_argument("inputs")
    ap.add_argument("out")
    ap.add_argument("--compare")
    ap.add_argument("--tolerance", type=float, default=1e-4)
    ap.add_argument("--verbose", action="store_true")
    a = ap.parse_args()
    w = Weights(a.weights)
    c = w.config()
    print(f"config inferred from {a.weights}: {c}", flush=True)
    inp = SafeTensors(a.inputs)
    t = {n: inp.get(n) for n in inp.names()}
    hs, ehs = t["hidden_states"], t["encoder_hidden_states"]
    img_ids, txt_ids = t["img_ids"].reshape(-1, 3), t["txt_ids"].reshape(-1, 3)
    start = time.time()
    log = (lambda s: print(f"  {time.time() - start:7.1f} s  {s}", flush=True)) if a.verbose else (lambda s: None)
    outs = []
    for b in range(hs.shape[0]):
        g = t["guidance"][b] if c["guidance"] else None
        outs.append(forward_item(w, c, hs[b], ehs[b], t["pooled_projections"][b], t["timestep"][b], g, img_ids, txt_ids, log))
    sample = np.stack(outs).astype(F32)
    with open(a.out, "wb") as f:
        f.write(safetensors_bytes([("sample", "F32", sample.shape, sample.tobytes())]))
    print(f"sample {list(sample.shape)} in {time.time() - start:.1f} s ({w.loaded} tensor reads), finite: "
          f"{bool(np.isfinite(sample).all())}", flush=True)
    if a.compare:
        other = SafeTensors(a.compare).get("sample")
        rel_l2 = float(np.linalg.norm(sample - other) / np.linalg.norm(sample))
        rel_max = float(np.abs(sample - other).max() / np.abs(sample).max())
        print(f"vs {a.compare}: relative L2 {rel_l2:.3g}, max |diff| / max |ref| {rel_max:.3g}", flush=True)
        if not rel_l2 <= a.tolerance:
            sys.exit(1)


if __name__ == "__main__":
    main()
