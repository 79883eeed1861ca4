#!/usr/bin/env bash
# Arbitrary-scale training on natural photos (data=photos targets=arbitrary_scale), one run per seed, all
# at once on the visible GPUs (round-robin), at equal steps; then ginr.tools.compare over the runs (mean and
# 95% interval over seeds of the test scores at 2x, 4x and 8x and their margins over the best classical
# upscaler). Run after `. tools/gpu_setup.sh` with photos.v2.npz in the data folder's photos/.
#   bash tools/photos_run.sh OUT_DIR STEPS [SEED...] [-- OVERRIDES...]     (default seeds 0 1)
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 OUT_DIR STEPS [SEED...] [-- OVERRIDES...]" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
steps=$2
shift 2
seeds=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do seeds+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ ${#seeds[@]} -gt 0 ] || seeds=(0 1)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
runs=$(mktemp -d)
gpus=$(nvidia-smi -L | wc -l)
started=$SECONDS
for i in "${!seeds[@]}"; do
  seed=${seeds[$i]}
  CUDA_VISIBLE_DEVICES=$((i % gpus)) timeout 560 python3 -m ginr.train experiment=scent_ff data=photos \
    targets=arbitrary_scale seed="$seed" trainer.max_steps="$steps" trainer.eval_every=$(((steps + 2) / 3)) \
    trainer.ckpt_every=100000 trainer.time_limit_min=8.5 logger.progress=false run_dir="$runs/seed$seed" \
    hydra.output_subdir=null "$@" >"$out/seed$seed.log" 2>&1 &
done
wait || true
echo "runs: $((SECONDS - started)) s"
grep -h -E "step [0-9]+: (val|test)" "$out"/seed*.log || true
python3 -m ginr.tools.compare "$runs" --out "$out/compare" >"$out/compare.log" 2>&1 || cat "$out/compare.log"
tar czf "$out/runs.tgz" --exclude='*.ckpt' -C "$runs" .
echo "total: $((SECONDS - started)) s"
