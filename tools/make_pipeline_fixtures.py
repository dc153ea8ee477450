"""Writes Tests/Fixtures/pipeline/*: tiny random text encoders + tokenizers sized for the tiny FLUX of
Tests/Fixtures/dreamsr (T5 d_model 32 = FLUX joint_attention_dim, CLIP hidden 16 = FLUX pooled_projection_dim), for
the end-to-end DreamSR pipeline test (caption -> restore -> texture -> blend). With the FLUX/DreamSR fixtures of
tools/make_dreamsr_fixtures.py and the VAE fixture of Tests/Fixtures/vae they form a complete tiny model set.

    .venv-ref/bin/python tools/make_pipeline_fixtures.py [--out Tests/Fixtures/pipeline]

Layout (the HF layouts the model registry expects):
- text_encoder/{model.safetensors,config.json}    CLIPTextModel (hidden 16, 1 layer), bf16-rounded weights
- text_encoder_2/{model.safetensors,config.json}  T5EncoderModel (d_model 32, 1 layer)
- tokenizer/{vocab.json,merges.txt}              byte-level BPE: 256 byte symbols, the same with </w>, a few merges
- tokenizer_2/tokenizer.json                      Unigram over single characters + a few words, Metaspace
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def save_model(model, folder: Path, config):
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().to(torch.bfloat16).contiguous() for k, v in model.state_dict().items()}
    # tied / shared weights must be stored once each under their own names
    sd = {k: v.clone() for k, v in sd.items()}
    save_file(sd, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(config.to_dict(), indent=1, default=str))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "Tests/Fixtures/pipeline"))
    out = Path(ap.parse_args().out)
    torch.manual_seed(0)

    # CLIP tokenizer: 256 byte symbols, their </w> forms, a few merges, the two specials.
    symbols = bytes_to_unicode()
    vocab = {}
    for s in symbols:
        vocab[s] = len(vocab)
    for s in symbols:
        vocab[s + "</w>"] = len(vocab)
    merges = [("h", "i"), ("q", "u"), ("a", "l"), ("t", "y</w>"), ("h", "o"), ("t", "o</w>")]
    for a, b in merges:
        vocab[a + b] = len(vocab)
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    tok = out / "tokenizer"
    tok.mkdir(parents=True, exist_ok=True)
    (tok / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (tok / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in merges))

    clip_cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                              num_attention_heads=2, max_position_embeddings=77, projection_dim=16,
                              bos_token_id=vocab["<|startoftext|>"], eos_token_id=vocab["<|endoftext|>"], pad_token_id=1)
    save_model(CLIPTextModel(clip_cfg).eval(), out / "text_encoder", clip_cfg)

    # T5 tokenizer: Unigram over printable ASCII characters (with the ▁ word marker) plus a few words.
    pieces = [["<pad>", 0.0], ["</s>", 0.0], ["<unk>", 0.0], ["\u2581", -2.0]]
    for w in ["high", "quality", "photo", "sharp", "detailed", "natural"]:
        pieces.append(["\u2581" + w, -3.0])
    for c in range(33, 127):
        pieces.append([chr(c), -5.0])
        pieces.append(["\u2581" + chr(c), -5.5])
    tj = {
        "version": "1.0",
        "added_tokens": [{"id": 0, "content": "<pad>", "special": True}, {"id": 1, "content": "</s>", "special": True},
                         {"id": 2, "content": "<unk>", "special": True}],
        "normalizer": None,
        "pre_tokenizer": {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True},
        "post_processor": None,
        "decoder": None,
        "model": {"type": "Unigram", "unk_id": 2, "vocab": pieces, "byte_fallback": False},
    }
    tok2 = out / "tokenizer_2"
    tok2.mkdir(parents=True, exist_ok=True)
    (tok2 / "tokenizer.json").write_text(json.dumps(tj, ensure_ascii=False))

    t5_cfg = T5Config(vocab_size=len(pieces), d_model=32, d_kv=8, d_ff=48, num_layers=1, num_heads=4,
                      feed_forward_proj="gated-gelu", relative_attention_num_buckets=32,
                      relative_attention_max_distance=128, is_encoder_decoder=False, use_cache=False,
                      pad_token_id=0, eos_token_id=1)
    save_model(T5EncoderModel(t5_cfg).eval(), out / "text_encoder_2", t5_cfg)
    print("wrote", out)


if __name__ == "__main__":
    main()
