#!/usr/bin/env bash
# GPU benchmarks and memory-planner checks, for one H100:
#   tools/gpu_bench.sh OUT_DIR
# 1. python -m ginr.bench --preset reference --out OUT_DIR (its preset stops starting cases after 330 s)
# 2. python -m ginr.memory for every experiment at bf16 -> OUT_DIR/memory_<name>.txt (the predicted peak
#    beside the measured one, with the relative error)
# Well under 9 minutes in total: a time limit guards each step.
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
if ! timeout 400 "$python" -m ginr.bench --preset reference --out "$out" 2>&1 | tee "$out/bench.log"; then
  echo "ginr.bench failed or timed out; see $out/bench.log" >&2
  failed=1
fi
echo "bench: $((SECONDS - started)) s"

plan() {  # plan NAME OVERRIDES...
  local name="$1"
  shift
  echo "== memory_$name: $*"
  if ! timeout 100 "$python" -m ginr.memory "$@" trainer.precision=bf16 >"$out/memory_$name.txt" 2>"$out/memory_$name.err"; then
    echo "ginr.memory $* failed; see $out/memory_$name.err" >&2
    failed=1
  fi
  cat "$out/memory_$name.txt"
}
plan scent_ff experiment=scent_ff
plan scent_attn experiment=scent_attn
plan scent_xattn experiment=scent_xattn
plan mamba_ginr experiment=mamba_ginr
plan scent experiment=scent
plan scent_attn_naive experiment=scent_attn decoder.attn_impl=naive

echo "== predicted vs measured peaks"
grep -H "relative error" "$out"/memory_*.txt || true
echo "total: $((SECONDS - started)) s"
exit "$failed"
