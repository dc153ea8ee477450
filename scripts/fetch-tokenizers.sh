#!/usr/bin/env bash
# Fetches the tokenizer data used by the Tokenizers tests and `dreamsr tokenize`, from PyPI only (no HF Hub):
#   models/tokenizers/clip/bpe_simple_vocab_16e6.txt.gz  open_clip's BPE file (PyPI open-clip-torch wheel, MIT)
#   models/tokenizers/clip/merges.txt                    CLIP merges (stable-diffusion-cpp-python 0.4.7 sdist, MIT)
#   models/tokenizers/clip/vocab.json                    CLIP vocab, rebuilt from the merges exactly as CLIP does
#   models/tokenizers/t5/tokenizer.json                  T5 v1.1 Unigram tokenizer.json (same sdist)
# Usage: scripts/fetch-tokenizers.sh [DEST]   (DEST defaults to ./models/tokenizers; idempotent)
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${1:-$ROOT/models/tokenizers}"
PY="${PYTHON:-python3}"
SDCPP_VERSION="0.4.7"
OPENCLIP_VERSION="${OPENCLIP_VERSION:-3.3.0}"

if [[ -s "$DEST/clip/bpe_simple_vocab_16e6.txt.gz" && -s "$DEST/clip/merges.txt" && -s "$DEST/clip/vocab.json" \
      && -s "$DEST/t5/tokenizer.json" ]]; then
    echo "fetch-tokenizers: already present in $DEST"
    exit 0
fi

command -v "$PY" >/dev/null || { echo "fetch-tokenizers: needs python3 with pip" >&2; exit 1; }
mkdir -p "$DEST/clip" "$DEST/t5"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

echo "fetch-tokenizers: downloading open-clip-torch==$OPENCLIP_VERSION wheel"
"$PY" -m pip download --quiet --no-deps --only-binary :all: "open-clip-torch==$OPENCLIP_VERSION" -d "$WORK/oc"
# The sdist is forced with --no-binary for this package only; its build backend's own requirements may come as wheels
# (with --no-binary :all: pip would compile cmake from source just to read the metadata).
echo "fetch-tokenizers: downloading stable-diffusion-cpp-python==$SDCPP_VERSION sdist"
"$PY" -m pip download --quiet --no-deps --no-binary stable-diffusion-cpp-python \
    "stable-diffusion-cpp-python==$SDCPP_VERSION" -d "$WORK/sd"

"$PY" - "$WORK" "$DEST" <<'PYEOF'
import glob, gzip, json, os, re, sys, tarfile, zipfile

work, dest = sys.argv[1], sys.argv[2]

whl = glob.glob(os.path.join(work, "oc", "open_clip_torch-*.whl"))[0]
with zipfile.ZipFile(whl) as z:
    data = z.read("open_clip/bpe_simple_vocab_16e6.txt.gz")
with open(os.path.join(dest, "clip", "bpe_simple_vocab_16e6.txt.gz"), "wb") as f:
    f.write(data)

sdist = glob.glob(os.path.join(work, "sd", "stable_diffusion_cpp_python-*.tar.gz"))[0]
member = "vendor/stable-diffusion.cpp/src/tokenizers/vocab/clip_t5.hpp"
with tarfile.open(sdist) as t:
    name = next(m for m in t.getnames() if m.endswith(member))
    text = t.extractfile(name).read().decode("ascii")

def byte_array(symbol):
    """Bytes of `static const unsigned char <symbol>[] = { 0x.., ... };` in a C header."""
    start = text.index(symbol + "[]")
    body = text[text.index("{", start) + 1 : text.index("}", start)]
    return bytes(int(h, 16) for h in re.findall(r"0x([0-9a-fA-F]{1,2})", body))

merges = byte_array("clip_merges_utf8_c_str").decode("utf-8")
t5 = byte_array("t5_tokenizer_json_str").decode("utf-8")
json.loads(t5)  # must be valid JSON

with open(os.path.join(dest, "t5", "tokenizer.json"), "w", encoding="utf-8") as f:
    f.write(t5)

# CLIP keeps the first 49152 - 256 - 2 merges (openai/CLIP simple_tokenizer.py; HF merges.txt has the same count).
lines = merges.split("\n")
header = lines[0] if lines[0].startswith("#") else None
pairs = [l for l in (lines[1:] if header else lines) if l.strip()][: 49152 - 256 - 2]
with open(os.path.join(dest, "clip", "merges.txt"), "w", encoding="utf-8") as f:
    f.write((header or "#version: 0.2") + "\n" + "\n".join(pairs) + "\n")

# vocab.json as openai/CLIP builds it: byte symbols, byte symbols + </w>, merged pairs, then the two specials.
def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))

symbols = list(bytes_to_unicode().values())
vocab = symbols + [s + "</w>" for s in symbols] + ["".join(p.split(" ")) for p in pairs]
vocab += ["<|startoftext|>", "<|endoftext|>"]
assert len(vocab) == 49408, len(vocab)
with open(os.path.join(dest, "clip", "vocab.json"), "w", encoding="utf-8") as f:
    json.dump({tok: i for i, tok in enumerate(vocab)}, f, ensure_ascii=False)
print(f"fetch-tokenizers: {len(pairs)} CLIP merges, {len(vocab)} CLIP vocab entries, "
      f"{len(json.loads(t5)['model']['vocab'])} T5 pieces")
PYEOF
echo "fetch-tokenizers: wrote $DEST"
