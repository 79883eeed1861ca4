#!/usr/bin/env bash
# Native vs multi-scale targets (without and with cell conditioning) at equal steps, the three runs at
# once on one GPU (after `. tools/gpu_setup.sh` with the Emoji3D tarball in the data folder; the 128
# and 256 px caches are built from it first, so the runs do not race);
# then, where PHOTOS (default .photos/, from tools/photos.sh) exists, the multi-scale checkpoint renders
# those photos at 256 to 2048 px with each render's time and peak memory:
#   bash tools/multiscale_probe.sh RUNS_DIR OUT_DIR [STEPS]
set -euo pipefail
runs=$1; out=$2; steps=${3:-1500}
mkdir -p "$runs" "$out"
python3 -c "
import os
from ginr.data.emoji3d import Emoji3D
for split, resolution in (('train', 128), ('val', 256), ('test', 256)):
    Emoji3D(root=os.environ['GINR_DATA_DIR'], split=split, resolution=resolution)"
# 2x, 4x and 8x against the real 64, 128 and 256 px images
common="experiment=scent_ff data.eval_resolutions=[64,128,256] trainer.max_steps=$steps trainer.eval_every=$steps trainer.eval_max_images=128 trainer.ckpt_every=100000 logger.progress=false hydra.output_subdir=null"
python3 -m ginr.train $common hydra.run.dir="$runs/native" > "$runs/native.log" 2>&1 &
python3 -m ginr.train $common targets=multiscale hydra.run.dir="$runs/multiscale" > "$runs/multiscale.log" 2>&1 &
python3 -m ginr.train $common targets=multiscale decoder.cell_conditioning=true hydra.run.dir="$runs/multiscale_cell" \
  > "$runs/multiscale_cell.log" 2>&1 &
wait
for run in native multiscale multiscale_cell; do
  cp "$runs/$run/status.json" "$out/$run.status.json"
  grep -E "step [0-9]+:|rror" "$runs/$run.log" | tail -4
done
photos=${PHOTOS:-.photos}
if [ -d "$photos" ]; then
  python3 -m ginr.evaluate "$runs/multiscale" --inputs "$photos" --sizes 256 512 1024 2048 --out "$runs/photos"
  cp "$runs/photos/results.json" "$runs/photos/per_image.csv" "$runs/photos/astronaut_2048.png" "$out/"
fi
