#!/usr/bin/env python3
"""Parity fixtures for the text encoders: tiny random-weight transformers CLIPTextModel and T5EncoderModel.

Writes Tests/Fixtures/text_encoders/{clip_text,t5}/:
  config.json          the HF config (as transformers saves it)
  model.safetensors    weights in HF key layout ("text_model." prefixed for CLIP as in real checkpoints; T5 keeps
                       shared.weight, not its tied copy), stored as bfloat16 (so loading bf16 is exercised too)
  io.safetensors       input_ids [B,L] int64; last_hidden_state [B,L,D] f32; pooler_output [B,D] f32 (clip only)
The reference forward runs in float32 on the bf16-rounded weights, so the Swift engine (which widens bf16 to f32)
must match to float32 accuracy. Run with .venv-ref/bin/python (scripts/setup-reference-env.sh) (torch + transformers + safetensors).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "Tests", "Fixtures", "text_encoders")


def bf16_round_(model):
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.to(torch.bfloat16).to(torch.float32))


def save(model, cfg, inputs, outputs, folder, rename=lambda k: k):
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg.to_dict(), f, indent=1, sort_keys=True, default=str)
    sd = {rename(k): v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    sd = {k: v for k, v in sd.items() if k is not None}
    save_file(sd, os.path.join(folder, "model.safetensors"), metadata={"format": "pt"})
    tensors = {"input_ids": inputs.to(torch.int64).contiguous()}
    tensors.update({k: v.detach().to(torch.float32).contiguous() for k, v in outputs.items()})
    save_file(tensors, os.path.join(folder, "io.safetensors"))
    size = sum(os.path.getsize(os.path.join(folder, n)) for n in os.listdir(folder))
    print(f"wrote {folder}: {size} bytes")


def clip_fixture():
    torch.manual_seed(0)
    # openai-style: legacy eos_token_id == 2 => pooled output at argmax(input_ids) (the first EOS = highest id).
    cfg = CLIPTextConfig(vocab_size=1000, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, max_position_embeddings=77, hidden_act="quick_gelu",
                         layer_norm_eps=1e-5, bos_token_id=998, eos_token_id=2, pad_token_id=1)
    model = CLIPTextModel(cfg).eval()
    with torch.no_grad():  # larger than default init so that every layer matters
        for name, p in model.named_parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.2)
            elif "bias" in name:
                p.normal_(0, 0.1)
            else:
                p.copy_(1 + 0.1 * torch.randn_like(p))
    bf16_round_(model)
    ids = torch.full((2, 77), 999, dtype=torch.int64)
    ids[:, 0] = 998
    ids[0, 1:12] = torch.randint(3, 990, (11,))
    ids[1, 1:60] = torch.randint(3, 990, (59,))
    with torch.no_grad():
        out = model(input_ids=ids)
    save(model, cfg, ids, {"last_hidden_state": out.last_hidden_state, "pooler_output": out.pooler_output},
         os.path.join(OUT, "clip_text"),
         # Real checkpoints (FLUX text_encoder/, saved by transformers 4) carry the "text_model." prefix.
         rename=lambda k: k if k.startswith("text_model.") else "text_model." + k)


def t5_fixture():
    torch.manual_seed(1)
    cfg = T5Config(vocab_size=1000, d_model=64, d_kv=16, num_heads=4, d_ff=96, num_layers=2,
                   relative_attention_num_buckets=32, relative_attention_max_distance=128,
                   feed_forward_proj="gated-gelu", layer_norm_epsilon=1e-6, dropout_rate=0.0,
                   tie_word_embeddings=False, is_encoder_decoder=False, use_cache=False)
    model = T5EncoderModel(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "layer_norm" in name:
                p.copy_(1 + 0.1 * torch.randn_like(p))
            else:
                p.normal_(0, 0.3 if "relative_attention_bias" in name else 0.15)
    bf16_round_(model)
    # 160 tokens: relative distances beyond max_distance (128) exercise every bucket; the tail is padding (id 0),
    # attended to as FLUX does (no attention mask).
    ids = torch.zeros((1, 160), dtype=torch.int64)
    ids[0, :120] = torch.randint(3, 1000, (120,))
    ids[0, 120] = 1
    with torch.no_grad():
        out = model(input_ids=ids)
    # encoder.embed_tokens is tied to shared: keep only shared.weight (what the engine reads first).
    save(model, cfg, ids, {"last_hidden_state": out.last_hidden_state}, os.path.join(OUT, "t5"),
         rename=lambda k: None if k == "encoder.embed_tokens.weight" else k)


if __name__ == "__main__":
    clip_fixture()
    t5_fixture()
