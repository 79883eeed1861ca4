#!/usr/bin/env bash
# Does `python -m ginr.train` run at the benchmark's speed? Times the default experiment's training step
# with ginr.tools.bench (compiled, as a GPU trains), then runs a real training of STEPS steps on the default
# dataset and prints the median ms/step and images/s of its logged windows after the first (which holds
# the compilation), beside the benchmark's. Data loading, logging and evaluation are excluded from the
# trainer's window time as they are from the bench's. Usage:
#   bash tools/trainer_vs_bench.sh OUT_DIR [STEPS]
set -euo pipefail
out=$1
steps=${2:-1200}
mkdir -p "$out"
python3 -m ginr.tools.bench --preset reference --compile --only 'compile/scent_ff/bf1[6]' --out "$out/bench" | grep "^\["
python3 -m ginr.train experiment=scent_ff trainer.max_steps="$steps" trainer.log_every=100 \
  trainer.eval_every=100000 trainer.eval_max_images=64 trainer.test_max_images=64 trainer.ckpt_every=100000 \
  logger.progress=false hydra.output_subdir=null hydra.run.dir="$out/run" 2>&1 | grep -E "compile|step [0-9]+:|rror"
python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

out = Path(sys.argv[1])
events = EventAccumulator(str(out / "run" / "tb"), size_guidance={"scalars": 0})
events.Reload()
windows = [e.value for e in events.Scalars("perf/ms_per_step")][1:]
bench = json.loads((out / "bench" / "results.json").read_text())["cases"][0]["ms"]
trainer = statistics.median(windows)
print(f"trainer: median {trainer:.1f} ms/step over {len(windows)} windows of 100 steps "
      f"(min {min(windows):.1f}, max {max(windows):.1f}); bench: {bench:.1f} ms/step; "
      f"trainer / bench = {trainer / bench:.3f}")
PY
