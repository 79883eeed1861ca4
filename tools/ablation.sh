#!/usr/bin/env bash
# The decoder-block ablation at equal budget (same steps, data, seed) on the default dataset at 32x32,
# then the comparison table and plots. Usage: bash tools/ablation.sh OUT_DIR [STEPS] [DEPTHS]
#   DEPTHS: comma-separated layers per stack, e.g. 2,3,4 (default 3)
set -euo pipefail
out=$1
steps=${2:-400}
depths=${3:-3}
python3 -m ginr.train sweep=decoder_blocks \
  "hydra.sweeper.params={experiment:'glob(*)',decoder.num_layers:'$depths'}" \
  trainer.max_steps=$steps trainer.eval_every=$((steps / 4)) optim.warmup_steps=$((steps / 10)) \
  logger.progress=false hydra.sweep.dir="$out" 2>&1 | grep -E "job #[0-9]+|jobs|rror" || true
python3 -m ginr.tools.compare "$out"
