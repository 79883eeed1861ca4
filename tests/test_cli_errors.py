"""The mistakes people make on the command line: one line naming the value and the fix, exit status 2,
and no run folder left behind for a run that never started."""

import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from ginr.config import ConfigError, compose, prepare
from ginr.engine.data import StepBatchSampler


def test_a_value_the_command_line_must_give_is_named():
    with pytest.raises(ConfigError, match=r"^data.dataset.root is missing: give it on the command line"):
        prepare(compose(["hardware=cpu", "data=image_folder"]))


def test_a_batch_larger_than_the_data_says_what_fits():
    with pytest.raises(ValueError, match="larger than the 3 training images: give data.batch_size=3 or less"):
        StepBatchSampler(3, 4, seed=0, start_step=0, rank=0, world_size=1)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["no root", "batch larger than the data", "bad value"])
def test_a_refused_start_is_one_line_and_leaves_no_run_folder(problem, tmp_path):
    images = tmp_path / "images" / "train"
    images.mkdir(parents=True)
    for i in range(3):
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(images / f"{i}.png")
    overrides = {
        "no root": ["data=image_folder"],
        "batch larger than the data": ["data=image_folder", f"data.dataset.root={images.parent}"],
        "bad value": ["trainer.max_steps=0"],
    }[problem]
    run = tmp_path / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", "hardware=cpu", *overrides, f"paths.data_dir={tmp_path / 'cache'}",
         f"hydra.run.dir={run}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert not run.exists()
