#!/usr/bin/env python3
"""Writes Tests/Fixtures/tokenizers/tokenizer_parity.json: reference token ids for 200 varied strings.

References (run with .venv-ref/bin/python (scripts/setup-reference-env.sh), which has transformers + tokenizers):
  clip: transformers.CLIPTokenizer.from_pretrained(models/tokenizers/clip)  (vocab.json + merges.txt, as diffusers
        loads FLUX's tokenizer/), max_length 77, truncation, no padding.
  t5:   tokenizers.Tokenizer.from_file(models/tokenizers/t5/tokenizer.json) (the file's own normalizer,
        pre-tokenizer, model and post-processor), truncation at 512, no padding.
  t5_sp: transformers.T5TokenizerFast.from_pretrained(models/tokenizers/t5): transformers >= 5 rebuilds the pipeline
        (Precompiled + WhitespaceSplit + Metaspace, SentencePiece-like whitespace), truncation at 512.
Data comes from scripts/fetch-tokenizers.sh (run it first).
Usage: tools/make_tokenizer_fixtures.py [TOKENIZER_DIR] [OUT_JSON]
"""
import json
import os
import random
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOK_DIR = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "models", "tokenizers")
OUT = sys.argv[2] if len(sys.argv) > 2 else os.path.join(ROOT, "Tests", "Fixtures", "tokenizers", "tokenizer_parity.json")

import tokenizers  # noqa: E402
import transformers  # noqa: E402
from transformers import CLIPTokenizer, T5TokenizerFast  # noqa: E402

HAND = [
    "",
    " ",
    "   ",
    "\t\n",
    "a",
    "A",
    "a photo of a cat",
    "A photograph of an astronaut riding a horse on the moon, highly detailed, 8k",
    "high quality, sharp focus, intricate details, masterpiece",
    "  leading and trailing spaces  ",
    "multiple     internal      spaces",
    "tabs\tand\nnewlines\r\nmixed \t \n whitespace",
    "UPPER lower MiXeD CaSe",
    "It's a dog's life, isn't it? We'll see; they'd've known.",
    "I'M SHOUTING, YOU'RE HEARING, WE'VE HEARD",
    "don't won't can't shouldn't",
    "rock'n'roll ''quoted'' 'single' \"double\"",
    "Hello, world! How are you?",
    "punctuation!!! ??? ... ;;; ::: --- ___ *** ###",
    "(parentheses) [brackets] {braces} <angles>",
    "email@example.com https://example.org/path?q=1&r=2#frag",
    "C:\\Windows\\System32 /usr/local/bin ~/.config",
    "price: $1,234.56 or €99,99 or £5 or ¥1000",
    "numbers 0 1 2 3 42 1234567890 3.14159 -7 +8 1e-5",
    "2024-01-31 12:34:56 UTC",
    "version v1.2.3-beta+build.45",
    "50% off 100°C 5km/h 3x4 1/2 ½ ² ³",
    "café naïve résumé jalapeño über façade",
    "Crème brûlée à la française, déjà vu",
    "Ångström Øresund Æsir ßtraße",
    "e\u0301 combining accent (decomposed é)",
    "A\u030a decomposed angstrom and \u212b sign",
    "ﬁ ﬂ ligatures ﬀ ﬃ",
    "ｆｕｌｌｗｉｄｔｈ ＡＢＣ １２３",
    "Ⅻ roman numeral Ⅳ",
    "①②③ circled",
    "😀 emoji 🎉🎉 party 👍🏽 thumbs",
    "👨‍👩‍👧‍👦 family ZWJ sequence",
    "🇫🇷🇯🇵 flags",
    "❤️ heart with variation selector ✔️",
    "日本語のテキスト、東京タワー。",
    "中文文本：一只猫坐在垫子上。",
    "한국어 텍스트 입니다",
    "Русский текст: кошка сидит на ковре.",
    "Ελληνικά: ΣΊΣΥΦΟΣ και σίσυφος",
    "ΟΔΟΣ final sigma test ΑΣ",
    "עברית טקסט",
    "العربية نص عربي",
    "हिन्दी पाठ",
    "ไทย ภาษาไทย",
    "Tiếng Việt có dấu",
    "Türkçe İstanbul ıI",
    "Ｉｓｔａｎｂｕｌ İ",
    "zero\u200bwidth\u200cjoiners\u200d",
    "non\u00a0breaking\u00a0space",
    "ideographic\u3000space",
    "em\u2003space en\u2002space thin\u2009space",
    "line\u2028separator paragraph\u2029separator",
    "soft\u00adhyphen",
    "control\u0007bell\u0001chars",
    "null\u0000byte",
    "replacement \ufffd char",
    "private use \ue000 char",
    "math ∑∫√∞≠≤≥ ± × ÷",
    "arrows → ← ↑ ↓ ⇒",
    "quotes “curly” ‘single’ «guillemets» „low“",
    "dashes – — ‐ and ellipsis …",
    "bullet • middle · dot",
    "™ ® © ℃ ℉",
    "tilde ~ caret ^ backtick ` pipe |",
    "<|startoftext|>",
    "<|endoftext|>",
    "a <|endoftext|> b",
    "</s>",
    "hello</s>world",
    "<extra_id_0> sentinel <extra_id_99>",
    "<unk> <pad>",
    "a" * 300,
    "ab" * 200,
    "supercalifragilisticexpialidocious antidisestablishmentarianism",
    "pneumonoultramicroscopicsilicovolcanoconiosis",
    "CamelCaseIdentifier snake_case_identifier kebab-case-identifier",
    "hashtag #SuperResolution @user",
    "x" + " " * 50 + "y",
    "\n\n\nnewlines only at start",
    "ends with newline\n",
    "1234567890" * 10,
    ".....",
    "!?",
    "'",
    "''",
    "'s",
    "'S",
    "’s curly apostrophe",
    "a\u0308\u0304 stacked marks",
    "𝔣𝔯𝔞𝔨𝔱𝔲𝔯 mathematical letters 𝐀𝐁𝐂",
    "ℌℑℜ letterlike",
    "Ǆ ǅ ǆ titlecase digraphs",
    "ſ long s",
    "ﬆ ligature st",
]

PARAGRAPH = (
    "A high resolution photograph of an old stone bridge crossing a quiet river at dawn, mist rising from the water, "
    "soft golden light filtering through the trees, reflections on the surface, moss on the stones, a small boat "
    "tied to a wooden post, distant mountains under a pale blue sky, birds in flight, dew on the grass, "
    "ultra detailed textures, natural colors, shot on a full frame camera with a 35mm lens at f/8. "
)


def generated(n):
    rng = random.Random(1234)
    alphabets = [
        "abcdefghijklmnopqrstuvwxyz",
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ",
        "0123456789",
        " ,.;:!?'\"-()[]{}/\\&%$#@*+=<>|~^`",
        "àáâãäåæçèéêëìíîïñòóôõöøùúûüýÿßœ",
        "αβγδεζηθικλμνξοπρστυφχψωΣΩ",
        "абвгдежзийклмнопрстуфхцчшщъыьэюя",
        "的一是不了人我在有他这中大来上国个到说们为子",
        "あいうえおかきくけこアイウエオカキクケコ",
        "😀😃😄😁😆🙂🙃😉😊🎨🖼️🌄🌅",
        "\t\n\u00a0\u3000\u2009",
    ]
    out = []
    for i in range(n):
        length = rng.choice([1, 3, 8, 20, 60, 150])
        s = []
        for _ in range(length):
            alpha = rng.choice(alphabets) if rng.random() < 0.35 else alphabets[0] + " "
            s.append(rng.choice(alpha))
        out.append("".join(s))
    return out


def main():
    texts = list(HAND)
    texts += [PARAGRAPH, PARAGRAPH * 2, PARAGRAPH * 6, (PARAGRAPH.upper() + "日本語 😀 ") * 5]
    texts += generated(200 - len(texts))
    assert len(texts) == 200, len(texts)

    clip = CLIPTokenizer.from_pretrained(os.path.join(TOK_DIR, "clip"))
    t5 = tokenizers.Tokenizer.from_file(os.path.join(TOK_DIR, "t5", "tokenizer.json"))
    t5.enable_truncation(512)
    t5_sp = T5TokenizerFast.from_pretrained(os.path.join(TOK_DIR, "t5"))

    cases = []
    for t in texts:
        c = clip(t, max_length=77, truncation=True, padding=False)["input_ids"]
        sp = t5_sp(t, max_length=512, truncation=True)["input_ids"]
        cases.append({"text": t, "clip": c, "t5": t5.encode(t).ids, "t5_sp": sp})
    # Sanity: the long ones really hit the limits.
    assert max(len(c["clip"]) for c in cases) == 77 and max(len(c["t5"]) for c in cases) == 512

    doc = {
        "generator": "tools/make_tokenizer_fixtures.py",
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
        "clip_reference": "transformers.CLIPTokenizer.from_pretrained(clip/ vocab.json+merges.txt), max_length=77, truncation=True",
        "t5_reference": "tokenizers.Tokenizer.from_file(t5/tokenizer.json), truncation 512",
        "t5_sp_reference": "transformers.T5TokenizerFast.from_pretrained(t5/) (transformers>=5 pipeline), truncation 512",
        "cases": cases,
    }
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {OUT}: {len(cases)} cases, {os.path.getsize(OUT)} bytes")


if __name__ == "__main__":
    main()
