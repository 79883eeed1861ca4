"""Faults end in a clear error or a clean recovery, and never cost a good checkpoint."""

import json
import random
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from ginr.engine import checkpoint as ckpt
from ginr.engine.loop import Trainer, TrainingDiverged
from ginr.train import train


def test_disk_full_while_writing_keeps_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "last.ckpt"
    ckpt.save_checkpoint({"step": 1, "model": {}, "config": {}}, path)

    def full_disk(obj, f):
        f.write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    with pytest.raises(
        ckpt.CheckpointError, match=r"could not write checkpoint .*No space left.*previous one is intact"
    ):
        ckpt.save_checkpoint({"step": 2, "model": {}, "config": {}}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


WRITER = """
import sys, torch
from ginr.engine.checkpoint import save_checkpoint
state = {"step": 2, "config": {}, "model": {"w": torch.randn(64, 1024, 1024)}}  # 256 MB: slow to write
print("writing", flush=True)
while True:
    save_checkpoint(state, sys.argv[1])
"""


def test_sigkill_while_writing_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "last.ckpt"
    ckpt.save_checkpoint({"step": 1, "model": {"w": torch.ones(3)}, "config": {}}, path)
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "writing"
    deadline = time.time() + 60
    while not any(p.name.endswith(".tmp") for p in tmp_path.iterdir()) and time.time() < deadline:
        time.sleep(0.01)  # kill it mid-write: the temporary file exists
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = ckpt.load_checkpoint(path)  # either the old one or a complete new one, never a torn file
    assert state["step"] in (1, 2)


@pytest.mark.slow
def test_non_finite_steps_are_skipped_and_counted(smoke_cfg, tmp_path, monkeypatch, caplog):
    original = Trainer.train_step

    def poisoned(self, images):
        if self.step == 1:  # the second step sees a NaN image
            images = images.clone()
            images[0, 0, 0, 0] = float("nan")
        return original(self, images)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    train(smoke_cfg("data.eval_resolutions=[]"))
    state = ckpt.load_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    assert state["bad_steps"] == 1 and state["step"] == 6
    warnings = [r.getMessage() for r in caplog.records if "non-finite" in r.getMessage()]
    assert warnings == ["step 2: non-finite loss or gradient, step skipped (1 so far)"]
    assert all(torch.isfinite(t).all() for t in state["model"].values())


@pytest.mark.slow
def test_persistent_nan_stops_and_keeps_the_good_checkpoint(smoke_cfg, tmp_path, monkeypatch):
    original = Trainer.train_step

    def poisoned(self, images):
        if self.step >= 3:
            images = torch.full_like(images, float("nan"))
        return original(self, images)

    monkeypatch.setattr(Trainer, "train_step", poisoned)
    with pytest.raises(TrainingDiverged, match="3 consecutive non-finite steps"):
        train(smoke_cfg("data.eval_resolutions=[]", "trainer.max_bad_steps=3"))
    run = tmp_path / "run"
    state = ckpt.load_checkpoint(run / "checkpoints" / "last.ckpt")
    assert state["step"] == 3 and all(torch.isfinite(t).all() for t in state["model"].values())
    status = json.loads((run / "status.json").read_text())
    assert status["state"] == "failed" and "TrainingDiverged" in status["error"]


def test_out_of_memory_names_the_planners_prediction(smoke_cfg, monkeypatch):
    def out_of_memory(self, images):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")

    monkeypatch.setattr(Trainer, "train_step", out_of_memory)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(
        torch.cuda, "get_device_properties", lambda device: type("P", (), {"total_memory": 8e9})
    )
    with pytest.raises(
        RuntimeError, match=r"CUDA out of memory at step 1 \(data.batch_size=4.*planner predicts a peak of"
    ):
        train(smoke_cfg("data.eval_resolutions=[]"))


def test_rng_state_round_trips_through_a_weights_only_checkpoint(tmp_path):
    path = ckpt.save_checkpoint(
        {"model": {}, "config": {}, "step": 0, "rng": ckpt.rng_state()}, tmp_path / "c.ckpt"
    )
    expected = (random.random(), np.random.rand(), torch.rand(2).tolist())
    ckpt.set_rng_state(ckpt.load_checkpoint(path)["rng"])  # torch.load(weights_only=True)
    assert (random.random(), np.random.rand(), torch.rand(2).tolist()) == expected
