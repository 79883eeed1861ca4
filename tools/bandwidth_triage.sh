#!/usr/bin/env bash
# Short scent_ff runs over Fourier settings (bandwidths as fractions of the 32 px Nyquist frequency,
# spectrum, modulation), one run per GPU at a time, to choose the decoder defaults by val PSNR at the
# training resolution and at 2x / 4x (real higher-resolution ground truth). Equal steps, each run with its
# own full warm-up + cosine schedule. Usage:
#   bash tools/bandwidth_triage.sh OUT_DIR [STEPS] [SEEDS]
set -euo pipefail
out=$1
mkdir -p "$out"
steps=${2:-1000}
seeds=${3:-1}
settings=(
  "gauss_0.08_0.32_q0.08 decoder.spectrum=gaussian decoder.bandwidths=[0.08,0.32] decoder.query_bandwidth=0.08"
  "gauss_0.16_0.64_q0.16 decoder.spectrum=gaussian decoder.bandwidths=[0.16,0.64] decoder.query_bandwidth=0.16"
  "gauss_0.12_0.48_q0.12 decoder.spectrum=gaussian decoder.bandwidths=[0.12,0.48] decoder.query_bandwidth=0.12"
  "log_1_4_q0.5 decoder.spectrum=log decoder.bandwidths=[1.0,4.0] decoder.query_bandwidth=0.5"
  "log_0.25_1_q0.125 decoder.spectrum=log decoder.bandwidths=[0.25,1.0] decoder.query_bandwidth=0.125"
  "gauss_0.08_0.32_q0.08_mult decoder.spectrum=gaussian decoder.bandwidths=[0.08,0.32] decoder.query_bandwidth=0.08 decoder.modulation=multiplicative"
)
gpus=$(python3 -c 'import torch; print(max(1, torch.cuda.device_count()))')
slot=0
for seed in $(seq 0 $((seeds - 1))); do
  for setting in "${settings[@]}"; do
    read -r name overrides <<<"$setting"
    # shellcheck disable=SC2086
    CUDA_VISIBLE_DEVICES=$((slot % gpus)) python3 -m ginr.train experiment=scent_ff $overrides seed=$seed \
      trainer.max_steps=$steps optim.warmup_steps=$((steps / 10)) trainer.eval_every=100000 \
      trainer.eval_max_images=256 trainer.test_max_images=8 trainer.ckpt_every=100000 logger.progress=false \
      hydra.output_subdir=null hydra.run.dir="$out/${name}_s$seed" >"$out/${name}_s$seed.log" 2>&1 &
    slot=$((slot + 1))
    if ((slot % gpus == 0)); then wait; fi
  done
done
wait
for status in "$out"/*/status.json; do
  echo "$(basename "$(dirname "$status")") $(python3 -c 'import json, sys; s = json.load(open(sys.argv[1]))
print(s.get("step"), " ".join(f"{k}={v:.2f}" for k, v in sorted(s.get("metrics", s).items()) if k in ("val/psnr", "val/psnr_x2", "val/psnr_x4", "val/margin_x2", "val/margin_x4")))' "$status")"
done
