#!/usr/bin/env bash
# The encoders' quality on one GPU (issue #29), after `. tools/gpu_setup.sh`: each encoder with the
# recommended decoder (experiment=scent_ff) x seeds 0, 1 at one input size, at equal steps and at equal
# training time, then ginr.tools.compare on each arm.
#   bash tools/encoder_study.sh SIZE OUT_DIR [STEPS [overrides...]]   (overrides: for the bench and every run)
#   SIZE 32: data=emoji3d, every pixel of the 32 px image a step (the reference).
#   SIZE 178: data=emoji3d178 (the protocol's input: 400 + 256 tokens, batch 16), decoding 3,168 of the
#     31,684 pixels an image a step (IPC's 10%: every pixel costs 240 ms a step, too dear for a 30-minute
#     GPU session); evaluation renders every pixel, validation of a seeded 128 of the 295 val images (as
#     the protocol's run), test of all.
# 1. Each encoder's compiled training step is timed alone (bench --preset encoders, steps/ENCODER/DATA/compiled).
# 2. Equal steps: STEPS (default 600) for every encoder. Equal time: each encoder gets the steps its own step
#    time buys in the time the slowest encoder needs for STEPS steps; the slowest encoder's equal-time runs
#    are its equal-steps runs. The budget comes from step 1, not from the runs' wall-clock, because the runs
#    share the GPU (JOBS at a time, default 4), which stretches their steps.
# 3. OUT_DIR/{steps,time}/compare.md (+ .csv, curves, intervals, paired differences), OUT_DIR/bench/,
#    OUT_DIR/runs.tgz (the runs without checkpoints). Run it again on the same machine and the runs left
#    unfinished continue from their checkpoints (trainer.resume=auto); finished ones are left alone.
#    PYTHON (default python3) runs ginr. ARMS (default "steps time") picks the arms to run: "steps" alone
#    when the GPU time left does not buy the equal-time runs (a later call with both adds them). BENCH=FILE
#    takes the step times from a recorded bench results.json of the same cases (e.g.
#    experiments/encoders/steps_178px_h100.json) instead of timing them: the budgets then come from that
#    record's GPU; OUT_DIR/bench/source.txt names the record.
set -euo pipefail
[ $# -ge 2 ] || { echo "usage: $0 SIZE OUT_DIR [STEPS [overrides...]]" >&2; exit 2; }
size=$1
out_arg=$2
steps=${3:-600}
shift $(($# < 3 ? $# : 3))
case $size in
  32) data=emoji3d; extra=("$@") ;;
  178) data=emoji3d178; extra=(trainer.queries_per_image=3168 trainer.eval_max_images=128 "$@") ;;
  *) echo "SIZE=$size is not allowed: 32 or 178" >&2; exit 2 ;;
esac
[[ $steps =~ ^[1-9][0-9]*$ ]] || { echo "STEPS=$steps is not allowed: a positive whole number" >&2; exit 2; }
arms=${ARMS:-steps time}
for arm in $arms; do
  case $arm in
    steps | time) ;;
    *) echo "ARMS=$arms is not allowed: steps, time or both" >&2; exit 2 ;;
  esac
done
if [ -n "${BENCH:-}" ] && ! grep -q '"cases"' "$BENCH" 2>/dev/null; then
  echo "BENCH=$BENCH is not allowed: a bench results.json (python -m ginr.tools.bench --out DIR)" >&2
  exit 2
fi
mkdir -p "$out_arg"
out=$(cd "$out_arg" && pwd)
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python=${PYTHON:-python3}
runs=$out/runs
mkdir -p "$runs"

bench_set=()
[ ${#extra[@]} -eq 0 ] || bench_set=(--set "${extra[@]}")
if [ -n "${BENCH:-}" ] && [ ! -s "$out/bench/results.json" ]; then
  mkdir -p "$out/bench" && cp "$BENCH" "$out/bench/results.json" && echo "step times from $BENCH" > "$out/bench/source.txt"
fi
if [ ! -s "$out/bench/results.json" ]; then
  echo "== each encoder's compiled step alone ($data)"
  "$python" -m ginr.tools.bench --preset encoders --compile --out "$out/bench" --only "steps/*/$data/compiled" \
    "${bench_set[@]}" 2>&1 | grep -E "^\[|rror" || true
fi
# "ENCODER STEPS_EQUAL_TIME" a line, from the timed steps
"$python" - "$out/bench/results.json" "$steps" "$data" > "$out/budget.txt" <<'EOF'
import json, sys
cases = json.load(open(sys.argv[1]))["cases"]
cases = [c for c in cases if c["group"] == "steps" and c["compile"] and c["name"].split("/")[2] == sys.argv[3]]
failed = [c["name"] for c in cases if c["status"] != "ok"]
if failed or not cases:
    sys.exit(f"encoder_study: no step time for {', '.join(failed) or 'any encoder'}: no equal-time budget")
ms = {c["variant"]: c["ms"] for c in cases}
slowest = max(ms.values())
for name, t in ms.items():
    print(name, round(int(sys.argv[2]) * slowest / t), f"{t:.2f}")
EOF
cat "$out/budget.txt"
slowest=$(sort -k3 -g "$out/budget.txt" | tail -1 | cut -d' ' -f1)

commands=$out/commands.txt
: > "$commands"
overrides=$([ ${#extra[@]} -eq 0 ] || printf '%q ' "${extra[@]}")
while read -r encoder time_steps _; do
  for seed in 0 1; do
    for arm in $arms; do
      n=$([ $arm = steps ] && echo "$steps" || echo "$time_steps")
      [ $arm = time ] && [ "$encoder" = "$slowest" ] && continue
      dir=$(printf %q "$runs/$arm/${encoder}_s$seed")
      echo "$(printf %q "$python") -m ginr.train experiment=scent_ff data=$data encoder=$encoder seed=$seed" \
        "$overrides trainer.max_steps=$n trainer.eval_every=$(((n + 1) / 2)) trainer.resume=auto" \
        "logger.images=0 logger.progress=false hydra.run.dir=$dir > $dir.log 2>&1 || echo failed: $dir" >> "$commands"
      mkdir -p "$runs/$arm"
    done
  done
done < "$out/budget.txt"
echo "== $(wc -l < "$commands") runs, ${JOBS:-4} at a time"
xargs -d '\n' -P "${JOBS:-4}" -I{} bash -c {} < "$commands"

[[ " $arms " != *" steps "* ]] ||
  "$python" -m ginr.tools.compare "$runs/steps" --out "$out/steps" > "$out/steps.log" 2>&1 || tail -3 "$out/steps.log"
[[ " $arms " != *" time "* ]] ||
  "$python" -m ginr.tools.compare "$runs/time" "$runs/steps/${slowest}_s0" "$runs/steps/${slowest}_s1" \
    --out "$out/time" > "$out/time.log" 2>&1 || tail -3 "$out/time.log"
tar czf "$out/runs.tgz" --exclude='*.ckpt' -C "$runs" .
