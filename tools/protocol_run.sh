#!/usr/bin/env bash
# The GINR protocol's input size on one GPU, beside the 32 px default on the same budget (after
# `. tools/gpu_setup.sh` with the Emoji3D tarball in the data folder). Two runs of experiment=scent_ff,
# seed 0, each MINUTES of training steps (default 9; evaluation and compilation not counted):
#   emoji3d178: data=emoji3d178 (178 px, patch 9 + padding 1, 400 tokens; configs/protocol/ginr178.yaml),
#               scored on val every 250 steps, at 1x and against the real 256 px images;
#   emoji3d32:  the default data (32 px, 256 tokens), scored on val every 1,000 steps, at 1x, 2x and 4x.
# Each is scored on test once, on its checkpoint selected on val, beside the classical upscalers.
# OUT_DIR gets NAME.log and NAME.tgz (the run without checkpoints) for each. The runs go in order; a run
# whose NAME.tgz exists is not run again.
#   bash tools/protocol_run.sh OUT_DIR [MINUTES]
set -euo pipefail
[ $# -ge 1 ] || { echo "usage: $0 OUT_DIR [MINUTES]" >&2; exit 2; }
mkdir -p "$1"
out=$(cd "$1" && pwd)
minutes=${2:-9}
cd "$(dirname "${BASH_SOURCE[0]}")/.."
limit=$(python3 -c "print($minutes + 4)")  # a guard: evaluation and compilation come on top of the steps

train() {  # NAME OVERRIDES...: one run, its log and its run folder in OUT_DIR
  local name=$1 run started=$SECONDS
  shift
  [ -e "$out/$name.tgz" ] && { echo "$name: done before ($out/$name.tgz)"; return; }
  run=$(mktemp -d)/$name
  echo "$name: started $(date -u +%FT%TZ)"
  python3 -m ginr.train experiment=scent_ff seed=0 trainer.train_minutes="$minutes" trainer.max_steps=100000 \
    trainer.time_limit_min="$limit" trainer.eval_max_images=128 trainer.ckpt_every=100000 logger.progress=false \
    run_dir="$run" hydra.output_subdir=null "$@" >"$out/$name.log" 2>&1 ||
    echo "$name: training exited with status $? (see $name.log)"
  grep -vi warn "$out/$name.log" | grep -E "step [0-9]+:|test|peak|ms/step|stopped|rror" | tail -12 || true
  tar czf "$out/$name.tgz" --exclude='*.ckpt' -C "$(dirname "$run")" "$name"
  echo "$name: $((SECONDS - started)) s"
}

train emoji3d178 data=emoji3d178 trainer.eval_every=250
train emoji3d32 trainer.eval_every=1000
