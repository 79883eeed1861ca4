#!/usr/bin/env bash
# Short scent_ff runs at three Fourier bandwidth settings, to pick the defaults by val PSNR at the
# training resolution and at 2x / 4x (real higher-resolution ground truth). Usage:
#   bash tools/bandwidth_triage.sh OUT_DIR [MINUTES_PER_RUN]
set -euo pipefail
out=$1
minutes=${2:-2}
for setting in "32.0,128.0:16.0" "8.0,32.0:8.0" "4.0,16.0:4.0"; do
  bands=${setting%%:*}
  query=${setting##*:}
  python3 -m ginr.train experiment=scent_ff "decoder.bandwidths=[$bands]" decoder.query_bandwidth=$query \
    trainer.eval_max_images=128 trainer.test_max_images=8 trainer.ckpt_every=100000 hydra.output_subdir=null \
    trainer.time_limit_min=$minutes trainer.eval_every=100000 logger.progress=false \
    hydra.run.dir="$out/bw_${bands/,/_}_q$query" 2>&1 | grep -E "step [0-9]+:|error" || true
done
grep -h '"val/psnr' "$out"/bw_*/status.json || true
