#!/usr/bin/env bash
# Issue #29's measurements on one GPU, detached so that they outlive the GPU tool's 10-minute commands:
# OUT_DIR/log.txt tells the progress, OUT_DIR/done appears at the end. Carried: the kernel wheels (.whl)
# and .data/emoji3d (the package tarball; the caches are built here).
#   bash tools/encoders_gpu.sh OUT_DIR [STEPS [PARTS...]]      (default: 600 steps, every part in this order)
#   study32  the encoders' quality at 32 px, equal steps and equal time (tools/encoder_study.sh 32), ~15 min;
#   curve    the compiled scaling curve: each encoder alone at 512, 4,352 and 16,640 tokens a sequence, ~5 min;
#   study178 the same study at the protocol's 178 px input (tools/encoder_study.sh 178);
#   mamba2   kernel tables of the 178 px step with Mamba-2 and BiMamba, and Mamba-2 alone at chunk 256
#            (its own default; ginr's is 64), ~5 min.
# The environment passes through to tools/encoder_study.sh: a short GPU session can reuse the recorded
# step times and run one arm at a time (a 178 px run peaks at 15 GB: 4 at a time on an 80 GB H100):
#   BENCH=experiments/encoders/steps_178px_h100.json ARMS=steps JOBS=4 bash tools/encoders_gpu.sh OUT 600 study178
# (17 minutes on an H100), and a later call with ARMS=time on the same OUT adds the equal-time runs; on a
# fresh machine, first unpack the equal-steps runs' record: tar xzf .../quality178_h100/runs.tgz -C OUT/runs.
# Run on 2026-12-07 (one H100): study32, curve and study178's equal-steps arm, in experiments/encoders/.
set -uo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [STEPS [PARTS...]]" >&2; exit 2; }
steps=${2:-600}
parts=("${@:3}")
[ ${#parts[@]} -gt 0 ] || parts=(study32 curve study178 mamba2)
for part in "${parts[@]}"; do
  case $part in
    study32 | curve | study178 | mamba2) ;;
    *) echo "PART=$part is not allowed: study32, curve, study178 or mamba2" >&2; exit 2 ;;
  esac
done
mkdir -p "$1"
out=$(cd "$1" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
. tools/gpu_setup.sh
bench=(python3 -m ginr.tools.bench --preset encoders --compile)
{
  started=$SECONDS
  # the data caches: 32 px now, the evaluation sizes on the CPU while the first benchmark compiles
  python3 -c "from ginr.data.emoji3d import Emoji3D; Emoji3D(root='.data', split='train', resolution=32)"
  python3 -c "from ginr.data.emoji3d import Emoji3D
for r in (64, 128, 178, 256): Emoji3D(root='.data', split='train', resolution=r)" &
  caches=$!
  for part in "${parts[@]}"; do
    echo "== $part ($((SECONDS - started)) s)"
    case $part in
      study32) bash tools/encoder_study.sh 32 "$out/study32" "$steps" ;;
      curve)
        "${bench[@]}" --out "$out/curve" \
          --only "lengths/*/512/compiled" "lengths/*/4352/compiled" "lengths/*/16640/compiled" 2>&1 | grep -E "^\[|rror" ;;
      study178) wait $caches; bash tools/encoder_study.sh 178 "$out/study178" "$steps" ;;
      mamba2)
        wait $caches
        "${bench[@]}" --profile --out "$out/mamba2_steps178" --only steps/mamba2/emoji3d178/compiled \
          steps/bimamba/emoji3d178/compiled --set trainer.queries_per_image=3168 2>&1 | grep -E "^\[|rror"
        "${bench[@]}" --out "$out/mamba2_chunk256" --only "lengths/mamba2/*/compiled" \
          --set encoder.chunk=256 2>&1 | grep -E "^\[|rror" ;;
    esac
  done
  echo "total: $((SECONDS - started)) s"
} > "$out/log.txt" 2>&1
touch "$out/done"
