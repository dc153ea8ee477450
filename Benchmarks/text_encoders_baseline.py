#!/usr/bin/env python3
"""PyTorch CPU baseline for `dreamsr-bench text-encoders`: full-size CLIP-L text encoder (77 tokens) and one
full-size T5-XXL encoder block at 512 tokens (T5EncoderModel with num_layers=1, tiny vocab), random weights, fp32.
Prints one JSON line with median seconds.

Run by the benchmark with .venv-ref/bin/python (scripts/setup-reference-env.sh) (or --python); needs torch + transformers.
"""
import argparse
import json

import torch
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

from baseline_timing import timed  # Benchmarks/, this script's folder


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--t5-tokens", type=int, default=512)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    # CLIP-L (clip-vit-large-patch14's text tower), spelled out: transformers' CLIPTextConfig() defaults are the
    # 512-wide ViT-B/32 tower, which made the first recorded ratio compare our CLIP-L with a smaller model.
    clip_config = CLIPTextConfig(vocab_size=49408, hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                                 num_attention_heads=12, max_position_embeddings=77, hidden_act="quick_gelu",
                                 projection_dim=768)
    clip = CLIPTextModel(clip_config).eval()
    assert sum(p.numel() for p in clip.parameters()) > 120_000_000, "not the CLIP-L text tower"
    ids = torch.full((1, 77), 49407, dtype=torch.long)
    ids[0, 0] = 49406
    ids[0, 1:20] = torch.randint(0, 49000, (19,))
    t5 = T5EncoderModel(T5Config(vocab_size=128, d_model=4096, d_kv=64, num_heads=64, d_ff=10240, num_layers=1,
                                 feed_forward_proj="gated-gelu", dropout_rate=0.0)).eval()
    t5_ids = torch.randint(0, 128, (1, a.t5_tokens))
    out = {"threads": torch.get_num_threads(), "torch": torch.__version__}
    with torch.inference_mode():
        out["clip_fp32"] = timed(lambda: clip(input_ids=ids), a.repeats)
        out["t5_block_fp32"] = timed(lambda: t5(input_ids=t5_ids), a.repeats)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
