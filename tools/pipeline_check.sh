#!/usr/bin/env bash
# One call on a GPU machine: the CUDA tests, then the benchmark and the memory planner on inputs that are
# not the defaults, to show that they build the step's inputs as the trainer does (one input pipeline):
# the default step (compiled and eager), the eager step with a 128 px input, batch 16 and 1,024 of its pixels
# per image, and with the arbitrary-scale recipe (1,792 pixels per image, 1,536 of them above the input's resolution).
#   tools/pipeline_check.sh OUT_DIR        (after `. tools/gpu_setup.sh`; about 6 minutes on an H100)
set -uo pipefail
out=${1:?usage: tools/pipeline_check.sh OUT_DIR}
mkdir -p "$out"
python="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

echo "== CUDA tests"
timeout 240 "$python" -m pytest -q -p no:cacheprovider -m cuda tests/test_ops.py tests/test_models.py tests/test_step.py 2>&1 | tail -4

bench() {  # NAME, then the benchmark's arguments
  local name=$1; shift
  echo "== bench $name: $*"
  timeout 200 "$python" -m ginr.tools.bench --preset reference --out "$out/$name" "$@" 2>&1 | grep -E "^\[|rror"
  cp "$out/$name/results.json" "$out/$name.json" 2>/dev/null
}
bench default --compile --only compile/scent_ff/bf16 main/scent_ff/bf16/ckpt-off
bench res128 --only main/scent_ff/bf16/ckpt-off --set data.resolution=128 data.batch_size=16 trainer.queries_per_image=1024
bench arbitrary --only main/scent_ff/bf16/ckpt-off --set targets=arbitrary_scale

echo "== memory planner against the measured eager step (arbitrary scale)"
timeout 120 "$python" -m ginr.tools.memory experiment=scent_ff targets=arbitrary_scale trainer.compile=false 2>&1 | tail -6 | tee "$out/memory_arbitrary.txt"
