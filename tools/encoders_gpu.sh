#!/usr/bin/env bash
# Issue #29's measurements in one GPU session (about 20 minutes on an H100), detached so that they outlive
# the GPU tool's 10-minute commands; OUT_DIR/done appears at the end, OUT_DIR/log.txt tells the progress.
# Carried: the kernel wheels (.whl) and .data/emoji3d (the package tarball; the caches are built here).
#   bash tools/encoders_gpu.sh OUT_DIR [STEPS]
#   1. the encoders' quality at 32 px, equal steps and equal time (tools/encoder_study.sh 32);
#   2. the compiled scaling curve: each encoder alone at 512, 4,352 and 16,640 tokens a sequence;
#   3. the encoders' quality at the protocol's 178 px input (tools/encoder_study.sh 178).
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [STEPS]" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
steps=${2:-600}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tools/gpu_setup.sh
{
  started=$SECONDS
  # the data caches: 32 px now, the evaluation sizes on the CPU while the first benchmark compiles
  python3 -c "from ginr.data.emoji3d import Emoji3D; Emoji3D(root='.data', split='train', resolution=32)"
  python3 -c "from ginr.data.emoji3d import Emoji3D
for r in (64, 128, 178, 256): Emoji3D(root='.data', split='train', resolution=r)" &
  echo "== 1. quality at 32 px ($((SECONDS - started)) s)"
  bash tools/encoder_study.sh 32 "$out/study32" "$steps"
  wait
  echo "== 2. the compiled curve ($((SECONDS - started)) s)"
  python3 -m ginr.tools.bench --preset encoders --compile --out "$out/curve" \
    --only "lengths/*/512/compiled" "lengths/*/4352/compiled" "lengths/*/16640/compiled" 2>&1 | grep -E "^\[|rror"
  echo "== 3. quality at 178 px ($((SECONDS - started)) s)"
  bash tools/encoder_study.sh 178 "$out/study178" "$steps"
  echo "total: $((SECONDS - started)) s"
} > "$out/log.txt" 2>&1
touch "$out/done"
