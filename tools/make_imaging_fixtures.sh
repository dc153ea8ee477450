#!/usr/bin/env bash
# Makes the tiny committed image fixtures for Tests/ImagingTests that dreamsr's own encoder cannot produce
# (CMYK JPEG, ICC-tagged JPEG, AVIF, GIF). Everything else the tests make at test time through the Imaging API.
# Needs the `vips` CLI (Debian: libvips-tools); installs it when missing and apt-get is available.
# Usage: tools/make_imaging_fixtures.sh   (writes Tests/Fixtures/imaging/)
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v vips >/dev/null; then
    if command -v apt-get >/dev/null; then apt-get install -y --no-install-recommends libvips-tools; else
        echo "need the vips command line tool (Debian package libvips-tools)" >&2; exit 1; fi
fi
out=Tests/Fixtures/imaging
mkdir -p "$out"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# 16x24 sRGB image, four flat quadrants (8x12 each): TL red, TR green, BL blue, BR white.
quad() { # quad R G B -> 8x12 3-band uchar .v file name
    vips black "$tmp/q$1_$2_$3.v" 8 12 --bands 3
    vips linear "$tmp/q$1_$2_$3.v" "$tmp/c$1_$2_$3.v" "1 1 1" "$1 $2 $3" --uchar
    echo "$tmp/c$1_$2_$3.v"
}
tl=$(quad 255 0 0); tr=$(quad 0 255 0); bl=$(quad 0 0 255); br=$(quad 255 255 255)
vips arrayjoin "$tl $tr $bl $br" "$tmp/quads.v" --across 2

# CMYK JPEG without an embedded profile (libvips's built-in CMYK profile converts it; no profile stored keeps the
# file tiny). Quadrants as ink: TL magenta+yellow (red), TR cyan+yellow (green), BL cyan+magenta (blue), BR no ink
# (white). Decoding must give clearly red / green / blue / white sRGB.
cquad() { # cquad C M Y K -> 8x12 4-band uchar .v file name
    vips black "$tmp/k$1_$2_$3_$4.v" 8 12 --bands 4
    vips linear "$tmp/k$1_$2_$3_$4.v" "$tmp/m$1_$2_$3_$4.v" "1 1 1 1" "$1 $2 $3 $4" --uchar
    echo "$tmp/m$1_$2_$3_$4.v"
}
ctl=$(cquad 0 255 255 0); ctr=$(cquad 255 0 255 0); cbl=$(cquad 255 255 0 0); cbr=$(cquad 0 0 0 0)
vips arrayjoin "$ctl $ctr $cbl $cbr" "$tmp/inks.v" --across 2
vips copy "$tmp/inks.v" "$tmp/cmyk.v" --interpretation cmyk
vips jpegsave "$tmp/cmyk.v" "$out/cmyk-quads-16x24.jpg" --Q 95 --strip

# JPEG tagged with a Display P3 profile (sRGB colours converted to P3 numbers): decoding must convert back to sRGB.
vips icc_transform "$tmp/quads.v" "$tmp/p3.v" p3 --embedded
vips jpegsave "$tmp/p3.v" "$out/p3-quads-16x24.jpg" --Q 95

# AVIF (8-bit) and GIF (palette) of the same quadrants.
vips heifsave "$tmp/quads.v" "$out/quads-16x24.avif" --compression av1 --bitdepth 8 --Q 90
vips gifsave "$tmp/quads.v" "$out/quads-16x24.gif"

# Unusual encodings of one flat colour, sRGB (200, 30, 10), 8x6: 16-bit CMYK TIFF, float CIELAB TIFF, float scRGB
# TIFF, palette PNG, HEIC (HEVC). Decoding each must give back about that colour.
vips black "$tmp/f0.v" 8 6 --bands 3
vips linear "$tmp/f0.v" "$tmp/flat.v" "1 1 1" "200 30 10" --uchar
vips colourspace "$tmp/flat.v" "$tmp/fcmyk.v" cmyk
vips linear "$tmp/fcmyk.v" "$tmp/fcmyk16f.v" 257 0
vips cast "$tmp/fcmyk16f.v" "$tmp/fcmyk16.v" ushort
vips copy "$tmp/fcmyk16.v" "$tmp/fcmyk16i.v" --interpretation cmyk
vips tiffsave "$tmp/fcmyk16i.v" "$out/flat-cmyk16.tif" --strip
vips colourspace "$tmp/flat.v" "$out/flat-lab-float.tif" lab
vips colourspace "$tmp/flat.v" "$out/flat-scrgb-float.tif" scrgb
vips pngsave "$tmp/flat.v" "$out/flat-palette.png" --palette
vips heifsave "$tmp/flat.v" "$out/flat.heic" --compression hevc --Q 95

# Two-frame GIF, 8x6 per frame: frame 1 red, frame 2 green. The CLI cannot set metadata, so page-height is written
# into the .v file's XML extension with vipsedit before gifsave.
vips black "$tmp/g0.v" 8 6 --bands 3
vips linear "$tmp/g0.v" "$tmp/gred.v" "1 1 1" "255 0 0" --uchar
vips linear "$tmp/g0.v" "$tmp/ggreen.v" "1 1 1" "0 255 0" --uchar
vips arrayjoin "$tmp/gred.v $tmp/ggreen.v" "$tmp/anim.v" --across 1
vipsheader -f getext "$tmp/anim.v" \
    | sed 's|<meta>|<meta><field type="gint" name="page-height">6</field><field type="gint" name="n-pages">2</field>|' \
    > "$tmp/anim.xml"
vipsedit --setext "$tmp/anim.v" < "$tmp/anim.xml"
vips gifsave "$tmp/anim.v" "$out/anim-red-green-8x6.gif"

ls -l "$out"
