#!/usr/bin/env bash
# GPU benchmarks and memory-planner checks, for one H100:
#   tools/gpu_bench.sh OUT_DIR
# 1. python -m ginr.tools.bench --preset reference --out OUT_DIR (its preset stops starting cases after 330 s)
# 2. python -m ginr.tools.memory.check: the planner against measured peaks -> OUT_DIR/memory_check.md, with
#    OUT_DIR/memory_<point>.txt (the planner's table beside the measured peak) for each of its points: every
#    experiment at bf16, and scent_ff with checkpointing, in fp32, at batch 16 and in the memory-lean mode;
#    then its prediction for every training step that step 1 measured (OUT_DIR/results.json)
# Well under 9 minutes in total: a time limit guards each step; the check starts no point after 450 s.
set -euo pipefail

if [[ $# -ne 1 ]]; then
  echo "usage: $0 OUT_DIR" >&2
  exit 2
fi
mkdir -p "$1"
out="$(cd "$1" && pwd)"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
python="${PYTHON:-python}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt" || true

failed=0
started=$SECONDS
if ! timeout 400 "$python" -m ginr.tools.bench --preset reference --out "$out" 2>&1 | tee "$out/bench.log"; then
  echo "ginr.tools.bench failed or timed out; see $out/bench.log" >&2
  failed=1
fi
echo "bench: $((SECONDS - started)) s"

started_check=$SECONDS
budget=$((450 - (SECONDS - started)))
if ((budget < 60)); then
  budget=60
fi
results=()
if [[ -f "$out/results.json" ]]; then
  results=(--results "$out/results.json")
fi
if ! timeout $((budget + 45)) "$python" -m ginr.tools.memory.check "$out" ${results[@]+"${results[@]}"} \
  --budget-s "$budget" >"$out/memory_check.log" 2>&1; then
  echo "ginr.tools.memory.check failed or timed out; see $out/memory_check.log" >&2
  failed=1
fi
cat "$out/memory_check.md" 2>/dev/null || cat "$out/memory_check.log"
echo "planner check: $((SECONDS - started_check)) s"
echo "total: $((SECONDS - started)) s"
exit "$failed"
