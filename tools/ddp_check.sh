#!/usr/bin/env bash
# Multi-GPU check: one GPU vs two at the same global batch (the loss curves must agree), and two GPUs at
# twice the batch (throughput). Usage: bash tools/ddp_check.sh OUT_DIR [STEPS]
set -euo pipefail
out=$1
steps=${2:-300}
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
common=(experiment=scent_ff trainer.max_steps=$steps trainer.log_every=25 trainer.eval_every=100000
        trainer.ckpt_every=100000 data.eval_resolutions=[] logger.progress=false optim.warmup_steps=50)
python3 -m ginr.train "${common[@]}" data.batch_size=64 hydra.run.dir="$out/gpu1_b64" 2>&1 | grep -E "step [0-9]+:|rror" || true
torchrun --standalone --nproc_per_node=2 -m ginr.train "${common[@]}" data.batch_size=64 hydra.run.dir="$out/gpu2_b64" 2>&1 | grep -E "step [0-9]+:|rror" || true
torchrun --standalone --nproc_per_node=2 -m ginr.train "${common[@]}" data.batch_size=128 hydra.run.dir="$out/gpu2_b128" 2>&1 | grep -E "step [0-9]+:|rror" || true
python3 - "$out" <<'PY'
import sys
from pathlib import Path
from statistics import median
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

def scalars(run, tag):
    acc = EventAccumulator(str(Path(sys.argv[1], run, "tb")), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars(tag)}

one, two = scalars("gpu1_b64", "train/loss"), scalars("gpu2_b64", "train/loss")
print("step  loss 1 GPU  loss 2 GPUs  relative difference (global batch 64)")
for step in sorted(one):
    print(f"{step:5d}  {one[step]:.5f}     {two.get(step, float('nan')):.5f}      {abs(two[step] - one[step]) / one[step]:.2%}")
ips = {run: median(list(scalars(run, "perf/images_per_s").values())[1:]) for run in ("gpu1_b64", "gpu2_b64", "gpu2_b128")}
for run, value in ips.items():
    print(f"{run}: {value:.0f} images/s (median over log windows after the first)")
print(f"2 GPUs / 1 GPU throughput: {ips['gpu2_b128'] / ips['gpu1_b64']:.2f}x at 64 images per GPU, "
      f"{ips['gpu2_b64'] / ips['gpu1_b64']:.2f}x at the same global batch")
PY
