#!/usr/bin/env bash
# One arm of the decoder-block study (configs/sweep/decoder_study.yaml) on every GPU of this machine,
# then its comparison, and the arm's runs without checkpoints as OUT_DIR/ARM.tgz.*.
#   bash tools/decoder_study.sh ARM OUT_DIR [overrides...]
#   ARM: steps (equal steps) | time (equal minutes of training steps) | params (residual blocks widened
#   to scent_ff's decoder parameters); STUDY_LIMIT_S (default 530) stops the sweep, its jobs included.
set -euo pipefail
arm=$1
out=$2
shift 2
case $arm in
  steps) budget=() ;;
  time) budget=(trainer.train_minutes=${STUDY_MINUTES:-0.8} trainer.max_steps=100000) ;;
  params) budget=(experiment=mamba_ginr decoder.hidden_dim=1576) ;;
  *) echo "ARM=$arm is not allowed: steps, time or params" >&2; exit 2 ;;
esac
mkdir -p "$out"
dir=$(mktemp -d)/$arm  # checkpoints stay outside OUT_DIR
# timeout signals the whole process group: the jobs stop cleanly and keep what they logged
timeout "${STUDY_LIMIT_S:-530}" python3 -m ginr.train sweep=decoder_study "${budget[@]}" "$@" \
  logger.progress=false hydra.sweep.dir="$dir" 2>&1 | grep -E "job #|jobs|rror" || true
python3 -m ginr.tools.compare "$dir" > "$dir/compare.log" 2>&1 || true
# in parts of at most 15 MB: cat OUT_DIR/ARM.tgz.* | tar xz
tar cz --exclude='*.ckpt' -C "$(dirname "$dir")" "$arm" | split -b 15M - "$out/$arm.tgz."
ls -la "$out"
