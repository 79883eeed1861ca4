#!/usr/bin/env bash
# One call on a GPU machine: the CUDA tests, the training-step benchmark of every variant (bf16, with and
# without checkpointing, memory-lean, compiled), and a real `python -m ginr.train` run of the default
# experiment at the benchmark's shape, so its logged ms/step can be held against the benchmark's.
#   tools/gpu_check.sh OUT_DIR            (after `. tools/gpu_setup.sh`; about 8 minutes on an H100)
set -uo pipefail
out=${1:?usage: tools/gpu_check.sh OUT_DIR}
mkdir -p "$out"
python="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"

echo "== CUDA tests"
timeout 240 "$python" -m pytest -q -p no:cacheprovider -m cuda tests/test_ops.py tests/test_models.py 2>&1 | tail -4

echo "== benchmark"
timeout 300 "$python" -m ginr.tools.bench --preset reference --out "$out/bench" --compile \
  --only "main/*/bf16/*" lean/ compile/ 2>&1 | grep -E "^\[|error|Error" | tee "$out/bench.log"

echo "== a real run: 64 images x 1024 pixels per step, as the benchmark's main table"
images=$(mktemp -d)
"$python" - "$images" <<'PY'
import sys, numpy as np
from pathlib import Path
from PIL import Image
root, rng = Path(sys.argv[1]), np.random.default_rng(0)
for split, n in (("train", 1024), ("test", 64)):
    (root / split).mkdir(parents=True)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / split / f"{i}.png")
PY
timeout 240 "$python" -m ginr.train data=image_folder "data.dataset.root=$images" data.num_workers=4 \
  data.eval_resolutions=[] trainer.max_steps=400 trainer.log_every=100 trainer.eval_every=400 \
  trainer.ckpt_every=400 logger.progress=false "hydra.run.dir=$images/run" 2>&1 | grep -E "step|rror" | tail -5
"$python" - "$images/run" <<'PY'
import sys
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
acc = EventAccumulator(sys.argv[1] + "/tb", size_guidance={"scalars": 0}); acc.Reload()
for tag in ("perf/ms_per_step", "perf/images_per_s", "perf/peak_mem_gb"):
    print(tag, [round(e.value, 1) for e in acc.Scalars(tag)])
PY
