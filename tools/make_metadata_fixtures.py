#!/usr/bin/env python3
"""Makes the committed metadata fixtures of the CLI metadata tests (Tests/Fixtures/imaging/):

- exif-orient6-gps-xmp-iptc-16x8.jpg: 16x8 stored pixels (left half red, right half blue), EXIF Orientation 6 (shown
  turned 90 degrees clockwise: 8x16, red on top) with a GPS IFD (48 deg 51' 30" N, 2 deg 17' 40" E), an XMP packet
  whose dc:title is "dreamsr-xmp-marker" and an IPTC caption "dreamsr-iptc-marker".
- p3-16bit-xmp-12x8.png: 16-bit RGB PNG tagged with the Display P3 profile of p3-quads-16x24.jpg (made by
  tools/make_imaging_fixtures.sh), left half P3 pure red (outside sRGB), right half a 16-bit ramp, and an XMP packet
  with the same marker.

Needs Pillow (the reference environment has it): /work/refenv/bin/python tools/make_metadata_fixtures.py
"""
import io
import struct
import zlib
from pathlib import Path

from PIL import Image

OUT = Path(__file__).resolve().parent.parent / "Tests" / "Fixtures" / "imaging"
XMP = (b'<?xpacket begin="\xef\xbb\xbf" id="W5M0MpCehiHzreSzNTczkc9d"?>'
       b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
       b'<rdf:Description rdf:about="" xmlns:dc="http://purl.org/dc/elements/1.1/">'
       b'<dc:title><rdf:Alt><rdf:li xml:lang="x-default">dreamsr-xmp-marker</rdf:li></rdf:Alt></dc:title>'
       b'</rdf:Description></rdf:RDF></x:xmpmeta><?xpacket end="w"?>')


def segment(marker: int, payload: bytes) -> bytes:
    return struct.pack(">BBH", 0xFF, marker, len(payload) + 2) + payload


def iptc_caption(text: bytes) -> bytes:
    # Photoshop image resource 0x0404 holding one IPTC-IIM dataset 2:120 (caption).
    iim = b"\x1c\x02\x78" + struct.pack(">H", len(text)) + text
    if len(iim) % 2:
        iim += b"\x00"
    return b"Photoshop 3.0\x00" + b"8BIM" + struct.pack(">H", 0x0404) + b"\x00\x00" + struct.pack(">I", len(iim)) + iim


def jpeg_with_metadata() -> None:
    img = Image.new("RGB", (16, 8))
    for y in range(8):
        for x in range(16):
            img.putpixel((x, y), (255, 0, 0) if x < 8 else (0, 0, 255))
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    gps = exif.get_ifd(0x8825)
    gps[1] = "N"
    gps[2] = (48.0, 51.0, 30.0)
    gps[3] = "E"
    gps[4] = (2.0, 17.0, 40.0)
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    data = buf.getvalue()
    assert data[:2] == b"\xff\xd8"
    extra = segment(0xE1, b"http://ns.adobe.com/xap/1.0/\x00" + XMP) + segment(0xED, iptc_caption(b"dreamsr-iptc-marker"))
    (OUT / "exif-orient6-gps-xmp-iptc-16x8.jpg").write_bytes(data[:2] + extra + data[2:])


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)


def png16_with_profile() -> None:
    icc = Image.open(OUT / "p3-quads-16x24.jpg").info["icc_profile"]
    w, h = 12, 8
    rows = b""
    for y in range(h):
        row = b"\x00"
        for x in range(w):
            if x < 6:
                px = (65535, 0, 0)
            else:
                v = 20000 + 701 * (y * 6 + x - 6)  # not multiples of 257: 8-bit output would lose them
                px = (v, v + 3, v + 7)
            row += struct.pack(">HHH", *px)
        rows += row
    data = b"\x89PNG\r\n\x1a\n"
    data += png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
    data += png_chunk(b"iCCP", b"Display P3\x00\x00" + zlib.compress(icc))
    data += png_chunk(b"iTXt", b"XML:com.adobe.xmp\x00\x00\x00\x00\x00" + XMP)
    data += png_chunk(b"IDAT", zlib.compress(rows))
    data += png_chunk(b"IEND", b"")
    (OUT / "p3-16bit-xmp-12x8.png").write_bytes(data)


if __name__ == "__main__":
    jpeg_with_metadata()
    png16_with_profile()
    for p in sorted(OUT.glob("*")):
        if p.name.startswith(("exif-orient6", "p3-16bit")):
            print(p, p.stat().st_size, "bytes")
