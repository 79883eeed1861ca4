#!/usr/bin/env bash
# Arbitrary-scale arms at equal steps, all at once, spread round-robin over the visible GPUs (after
# `. tools/gpu_setup.sh` with the Emoji3D tarball in the data folder; the caches of every resolution the
# arms train or score at are built from it first, so the runs do not race). Each arm is NAME=OVERRIDES
# on top of `experiment=scent_ff`; every arm is scored on val (selection, every STEPS/3 steps) and then
# once on test at 1x and against the real 64 / 128 / 256 px images (2x, 4x, 8x) with the classical
# upscalers beside it (EVAL_RESOLUTIONS, default [64,128,256]). Then the RENDER arm (default: the
# last; none: no renders) renders the photos of PHOTOS (default .photos/, from tools/photos.sh) at 256
# to 2048 px with each render's time and peak memory, and a picture grid of 8 test emoji. OUT gets
# results.tgz (every arm's status.json, the render tables) and the pictures.
#   bash tools/multiscale_probe.sh RUNS_DIR OUT_DIR STEPS NAME=OVERRIDES [NAME=OVERRIDES ...]
# e.g. bash tools/multiscale_probe.sh /tmp/runs OUT 2000 native= \
#        skip_cell="targets=multiscale targets.resolution=[64,128,256] decoder.image_skip=bicubic decoder.cell_conditioning=true"
set -euo pipefail
runs=$1; out=$2; steps=$3; shift 3
[ $# -ge 1 ] || { echo "error: name at least one arm, NAME=OVERRIDES" >&2; exit 2; }
mkdir -p "$runs" "$out"
python3 -c "
import os
from concurrent.futures import ProcessPoolExecutor
from ginr.data.emoji3d import Emoji3D
def build(resolution):
    for split in ('train', 'val', 'test'):
        Emoji3D(root=os.environ['GINR_DATA_DIR'], split=split, resolution=resolution)
with ProcessPoolExecutor(3) as pool:
    list(pool.map(build, (64, 128, 256)))"
gpus=$(nvidia-smi -L | wc -l)
common="experiment=scent_ff data.eval_resolutions=${EVAL_RESOLUTIONS:-[64,128,256]} trainer.max_steps=$steps
  trainer.eval_every=$(( (steps + 2) / 3 )) trainer.eval_max_images=128 trainer.ckpt_every=100000
  logger.progress=false hydra.output_subdir=null"
names=(); n=0
for arm in "$@"; do
  name=${arm%%=*}; overrides=${arm#*=}; names+=("$name")
  # shellcheck disable=SC2086  # the overrides are words
  CUDA_VISIBLE_DEVICES=$(( n % gpus )) python3 -m ginr.train $common $overrides hydra.run.dir="$runs/$name" \
    > "$runs/$name.log" 2>&1 &
  n=$(( n + 1 ))
done
wait || true
mkdir -p "$runs/results"
for name in "${names[@]}"; do
  cp "$runs/$name/status.json" "$runs/results/$name.status.json" || echo "$name: no status.json" >&2
  grep -E "step [0-9]+:|rror" "$runs/$name.log" | tail -3
done
render=${RENDER:-${names[-1]}}
photos=${PHOTOS:-.photos}
if [ "$render" != none ]; then
  python3 -m ginr.tools.evaluate "$runs/$render" --max-images 8 --images 8 --out "$runs/emoji" > /dev/null
  cp "$runs/emoji/renders.png" "$out/${render}_test_renders.png"
fi
if [ "$render" != none ] && [ -d "$photos" ]; then
  python3 -m ginr.tools.evaluate "$runs/$render" --inputs "$photos" --sizes 256 512 1024 2048 --out "$runs/photos"
  cp "$runs/photos/results.json" "$runs/results/${render}_photos.json"
  cp "$runs/photos/per_image.csv" "$runs/results/${render}_photos.csv"
  cp "$runs/photos/astronaut_2048.png" "$runs/photos/astronaut_512_grid.png" "$out/"
fi
tar -czf "$out/results.tgz" -C "$runs" results
