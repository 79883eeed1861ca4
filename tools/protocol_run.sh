#!/usr/bin/env bash
# The GINR protocol's input size on one GPU (after `. tools/gpu_setup.sh` with the Emoji3D tarball in the
# data folder): a run of data=emoji3d178 (178 px, patch 9 + padding 1, 400 tokens; configs/protocol/ginr178.yaml)
# for MINUTES of training steps (default 5.5: the step time of the 32 px record in experiments/first_run/v3),
# scored on val every 250 steps and on test once, at 1x and against the real 256 px images beside the
# classical upscalers; then the input-size benchmark of the same configuration's step and its renders at
# 4x and 8x (python -m ginr.tools.bench --preset inputs). OUT_DIR gets train.log, run.tgz (the run without
# checkpoints) and bench/.
#   bash tools/protocol_run.sh OUT_DIR [MINUTES]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [MINUTES]" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
minutes=${2:-5.5}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
run=$(mktemp -d)/emoji3d178
started=$SECONDS
timeout 540 python3 -m ginr.train experiment=scent_ff data=emoji3d178 seed=0 trainer.train_minutes="$minutes" \
  trainer.max_steps=100000 trainer.time_limit_min=8.5 trainer.eval_every=250 trainer.eval_max_images=128 \
  trainer.ckpt_every=100000 logger.progress=false run_dir="$run" hydra.output_subdir=null >"$out/train.log" 2>&1 ||
  echo "training exited with status $? (see train.log)"
grep -vi warn "$out/train.log" | grep -E "step [0-9]+:|test|peak|ms/step|stopped|rror" | tail -20 || true
tar czf "$out/run.tgz" --exclude='*.ckpt' -C "$(dirname "$run")" "$(basename "$run")"
echo "run: $((SECONDS - started)) s"
left=$((560 - (SECONDS - started)))
if ((left > 45)); then
  timeout "$left" python3 -m ginr.tools.bench --preset inputs --out "$out/bench" \
    --only inputs/emoji3d178/eager render/emoji3d178/ 2>&1 | grep -vi warn | tail -8 || true
fi
echo "total: $((SECONDS - started)) s"
