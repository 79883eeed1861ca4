#!/usr/bin/env bash
# One call of the long study on a GPU machine (the GPU tool stops a command at 10 minutes): the sweep
# (sweep=long_study or long_encoders, 20 minutes of steps a run) runs in DIR for at most LIMIT seconds
# (default 540), then its jobs checkpoint and stop; the comparison so far goes to OUT. DIR stays on the
# machine: call again on the warm machine and every job continues (trainer.resume=auto) until all have
# finished, which OUT/progress.txt says. Run after `. tools/gpu_setup.sh` with the Emoji3D tarball there.
#   bash tools/long_study.sh SWEEP DIR OUT [overrides...]
set -euo pipefail
[ $# -ge 3 ] || { echo "usage: $0 SWEEP DIR OUT [overrides...]" >&2; exit 2; }
sweep=$1; dir=$2; out=$3; shift 3
mkdir -p "$dir" "$out"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# timeout signals the process group: each job finishes its step, checkpoints and exits
timeout -s TERM "${LIMIT:-540}" python3 -m ginr.train sweep="$sweep" hydra.sweep.dir="$dir" logger.progress=false "$@" \
  2>&1 | grep -E "job #|jobs|rror" || true
for status in "$dir"/*/status.json; do
  python3 -c "import json, sys; s = json.load(open(sys.argv[1])); print(sys.argv[1], s['state'], s['step'], '/', s['max_steps'])" "$status"
done | tee "$out/progress.txt"
python3 -m ginr.tools.compare "$dir" --out "$out" > "$out/compare.log" 2>&1 || tail -3 "$out/compare.log"
tar czf "$out/runs.tgz" --exclude='*.ckpt' -C "$dir" .
