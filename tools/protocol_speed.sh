#!/usr/bin/env bash
# One call on a GPU machine for the long-sequence speed of issue #28 (after `. tools/gpu_setup.sh`; about 8
# minutes on an H100), each step under its own time limit, in order of what matters most:
#   1. the selective-scan kernels against the PyTorch scan on the GPU, the Triton scan's chunks included;
#   2. the encoder alone, compiled, at 512 and 16,640 tokens a sequence (about 32k tokens a batch), on
#      mamba-ssm's scan and on ginr's chunked Triton scan, with kernel tables (OUT/lengths_BACKEND/);
#   3. the 128 px, patch 2, batch 64, 1,024-pixel step (data=emoji3d128_p2) compiled, with its kernel
#      table (OUT/step128/);
#   4. the Triton scan's chunk lengths and tiles at 16,640 steps (batch 2) and at 512 (batch 64), beside
#      mamba-ssm's kernel (OUT/scan_tiles.txt).
#   bash tools/protocol_speed.sh OUT_DIR
set -uo pipefail
[ $# -eq 1 ] || { echo "usage: $0 OUT_DIR" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python3}"
started=$SECONDS

echo "== scan kernels against the PyTorch scan"
timeout 150 "$python" -m pytest -q -p no:cacheprovider -m cuda tests/test_ops.py -k "selective_scan" 2>&1 | tail -3

for backend in cuda triton; do
  echo "== encoder alone by length, compiled, encoder.backend=$backend ($((SECONDS - started)) s)"
  timeout 150 "$python" -m ginr.tools.bench --preset encoders --compile --profile --out "$out/lengths_$backend" \
    --only lengths/bimamba/512/compiled lengths/bimamba/16640/compiled --set encoder.backend="$backend" 2>&1 |
    grep -E "^\[|^\| bimamba|rror" || true
done

echo "== the 128 px, patch 2, batch 64 step, compiled ($((SECONDS - started)) s)"
timeout 120 "$python" -m ginr.tools.bench --preset inputs --compile --profile --out "$out/step128" \
  --only inputs/emoji3d128_p2/compiled 2>&1 | grep -E "^\[|rror" || true

echo "== Triton scan tiles ($((SECONDS - started)) s)"
{
  timeout 60 "$python" tools/scan_tiles.py --batch 2 --length 16640 --block-d 1 2 --warps 1 2 4 --chunk 512 2048 4096
  timeout 40 "$python" tools/scan_tiles.py --batch 64 --length 512 --block-d 1 2 --warps 1 2 4
} 2>&1 | grep -v -i warn | tee "$out/scan_tiles.txt"
echo "total: $((SECONDS - started)) s"
