#!/usr/bin/env bash
# Checks metrics.svg as a person would: draws it from the Python Lightning CSV fixture (or from
# the run directory given), renders it in headless Chromium (Debian's `chromium`, apt-installed
# when missing, root), takes a screenshot and fails if the screenshot is blank (under 1% of
# its pixels differ from white); checks our own metrics.png (resvg) the same way. The
# screenshot is left at $OUT (default target/metrics-shot.png).
#   scripts/svg-screenshot.sh [VERSION_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-target/metrics-shot.png}
if ! command -v chromium > /dev/null; then
  sudo=""; [ "$(id -u)" != 0 ] && sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium > /dev/null
fi
dir=${1:-}
if [ -z "$dir" ]; then
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  cp tests/fixtures/lightning-csv/metrics.csv "$dir/"
fi
cargo run --quiet --locked --example lightning_plot -- "$dir"
mkdir -p "$(dirname "$OUT")"
chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=900,1000 \
  --screenshot="$OUT" "file://$(realpath "$dir/metrics.svg")" 2> /dev/null
python3 - "$OUT" "$dir/metrics.png" <<'PY'
import struct, sys, zlib
def share(path):
  data = open(path, "rb").read()
  assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
  pos, idat, w = 8, b"", 0
  while pos < len(data):
      n, kind = struct.unpack(">I4s", data[pos:pos + 8])
      body = data[pos + 8:pos + 8 + n]
      if kind == b"IHDR":
          w, h, depth, color = struct.unpack(">IIBB", body[:10])
          assert depth == 8 and color in (2, 6), f"unexpected PNG format {depth} {color}"
          bpp = 3 if color == 2 else 4
      elif kind == b"IDAT":
          idat += body
      pos += 12 + n
  raw, stride, prev, ink = zlib.decompress(idat), w * bpp, bytearray(w * bpp), 0
  for y in range(h):
      f, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
      for i in range(stride):  # PNG's filters: None, Sub, Up, Average, Paeth
          a = line[i - bpp] if i >= bpp else 0
          b, c = prev[i], prev[i - bpp] if i >= bpp else 0
          p = a + b - c
          pred = [0, a, b, (a + b) // 2, a if abs(p - a) <= min(abs(p - b), abs(p - c)) else (b if abs(p - b) <= abs(p - c) else c)][f]
          line[i] = (line[i] + pred) & 255
      ink += sum(1 for x in range(0, stride, bpp) if min(line[x:x + 3]) < 200)
      prev = line
  return w, h, ink / (w * h)
ok = True
for path in sys.argv[1:]:
  w, h, s = share(path)
  print(f"{path}: {w}x{h}, {100 * s:.1f}% of the pixels drawn")
  ok &= s > 0.01
sys.exit(0 if ok else 1)
PY
