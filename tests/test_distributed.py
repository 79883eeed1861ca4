"""torchrun with two CPU processes (gloo): the same losses as one process at the same global batch."""

import json
import os
import subprocess
import sys

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


def losses(run_dir):
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss")]


def run(tmp_path, data_dir, name, nproc, *extra):
    run_dir = tmp_path / name
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    args = ["-m", "ginr.train", "experiment=scent_ff", "debug=smoke", "trainer.log_every=1", "trainer.deterministic=true",
            "trainer.queries_per_image=64", "data.eval_resolutions=[]", f"paths.data_dir={data_dir}",
            f"hydra.run.dir={run_dir}", *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(launcher + args, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return run_dir


@pytest.mark.slow
def test_two_processes_match_one_and_resume_on_another_count(tmp_path, data_dir):
    single = run(tmp_path, data_dir, "single", 1)
    double = run(tmp_path, data_dir, "double", 2)
    assert losses(double) == pytest.approx(losses(single), rel=1e-4)
    # A checkpoint written by two processes resumes on one, in the same run directory.
    run(tmp_path, data_dir, "ignored", 1, "trainer.max_steps=8", f"trainer.resume={double}")
    after = losses(double)
    assert len(after) == 8
    assert after[:6] == pytest.approx(losses(single), rel=1e-4)
    assert json.loads((double / "status.json").read_text())["step"] == 8
