"""One input pipeline: the trainer, the benchmark and the memory planner give the training step the same
inputs for one config (batch, input resolution, query pixels, targets above the input), because all three
build them with ``ginr.engine.build`` from the config."""

import argparse

import numpy as np
import pytest
import torch
from PIL import Image

from ginr.config import compose, prepare
from ginr.engine.step import TrainStep
from ginr.tools.bench.cases import PRESETS, Case
from ginr.tools.bench.runners import run_case
from ginr.tools.memory import plan
from ginr.train import train

# Nothing here is a default: batch, input resolution, queries per image, their sampling, the targets above.
OVERRIDES = [
    "hardware=cpu", "debug=smoke", "targets=arbitrary_scale", "data.batch_size=3", "data.resolution=16",
    "data.eval_resolutions=[32]", "targets.resolution=[32,64]", "targets.queries=50",
    "trainer.queries_per_image=100", "trainer.max_steps=1", "trainer.compile=false", "data.num_workers=0",
]  # fmt: skip
# (images, coords, targets) of the step: 3 images of 16 px; 100 input pixels and 50 above, shared by the batch
EXPECTED = [(3, 3, 16, 16), (1, 150, 4), (3, 150, 3)]  # coords: (y, x) and the pixel's size (cells)


@pytest.fixture
def seen(monkeypatch):
    """The shapes of every (images, coords, targets) a training step is given, whoever runs it."""
    shapes = []
    forward_backward = TrainStep.forward_backward

    def recorded(self, images, coords, targets):
        shapes.append([tuple(t.shape) for t in (images, coords, targets)])
        return forward_backward(self, images, coords, targets)

    monkeypatch.setattr(TrainStep, "forward_backward", recorded)
    return shapes


@pytest.fixture
def folder(tmp_path):
    rng = np.random.default_rng(0)
    for split, count in (("train", 6), ("val", 2), ("test", 2)):
        (tmp_path / "images" / split).mkdir(parents=True)
        for i in range(count):
            pixels = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / "images" / split / f"{i}.png")
    return tmp_path


def config(folder):
    data = [
        "data=image_folder",
        f"data.dataset.root={folder / 'images'}",
        f"paths.data_dir={folder / 'cache'}",
    ]
    return prepare(compose([*OVERRIDES, *data, f"run_dir={folder / 'run'}"]))


@pytest.mark.slow
def test_trainer_benchmark_and_planner_give_the_step_the_same_inputs(folder, seen):
    cfg = config(folder)
    train(cfg)
    assert seen[0] == EXPECTED  # the trainer's first step (then its FLOP count's, outside forward_backward)

    seen.clear()
    given = tuple(o for o in OVERRIDES if not o.startswith("hardware"))
    args = argparse.Namespace(overrides=given, peak_tflops=None, profile=False, out=folder)
    case = Case("main/default", "main", "default", ())
    record = run_case(case, PRESETS["cpu"], torch.device("cpu"), args, [])
    assert record["status"] == "ok" and seen and all(shapes == EXPECTED for shapes in seen)
    assert (record["batch"], record["resolution"], record["queries"]) == (3, 16, 150)  # reports what it ran

    seen.clear()
    predicted = plan(cfg)
    assert seen == [EXPECTED]  # the planner's fake-tensor step
    assert (predicted.batch_size, predicted.queries) == (3, 150)
