"""What a run writes for people and programs to read: status.json is valid JSON (no NaN), and the log
(train.log under the command line) has a line per log window with the loss and PSNR."""

import json
import logging

import pytest
import torch

from ginr.engine.logging import RunLogger
from ginr.engine.step import StepResult
from ginr.train import train


def test_status_json_is_valid_json_when_a_score_does_not_exist(tmp_path):
    logger = RunLogger(tmp_path, enabled=True, name="n", max_steps=2, start_step=0, params=1, progress=False)
    logger.set_status("finished", 2, metrics={"val/psnr": 20.0, "val/psnr_x2": float("nan")})
    logger.close()

    def reject(constant):
        raise AssertionError(f"{constant} is not JSON")

    status = json.loads((tmp_path / "status.json").read_text(), parse_constant=reject)
    assert status["metrics"] == {"val/psnr": 20.0, "val/psnr_x2": None}


@pytest.mark.slow
def test_each_log_window_is_a_line_with_loss_and_psnr(smoke_cfg, caplog, monkeypatch):
    from ginr.engine.loop import Window

    monkeypatch.setattr(Window, "seconds", lambda self: 100.0)  # 50 s per step, whatever the machine
    with caplog.at_level(logging.INFO, logger="ginr.engine.loop"):
        train(smoke_cfg("trainer.max_steps=4", "data.eval_resolutions=[]"))
    lines = [
        r.getMessage()
        for r in caplog.records
        if r.getMessage().startswith("step ") and "loss" in r.getMessage()
    ]
    assert [line.split(":")[0] for line in lines] == [
        "step 2/4",
        "step 4/4",
    ]  # debug=smoke logs every 2 steps
    assert all("train PSNR" in line and "images/s" in line and "training ETA" in line for line in lines)
    assert lines[0].endswith("training ETA 1m40s")  # the 2 steps left at 50 s each
    assert lines[-1].endswith("training ETA 0s")


@pytest.mark.slow
def test_the_first_checkpoint_comes_within_a_minute_however_long_the_interval(
    smoke_cfg, tmp_path, monkeypatch
):
    """trainer.ckpt_every_min=60, and the loop's clock moves 25 s each time it is read: last.ckpt appears
    after a minute, not an hour, so a kill early in a run loses a minute."""
    import itertools
    import time

    from ginr.engine import loop
    from ginr.engine.checkpoint import load_checkpoint

    ticks = itertools.count(0, 25)

    class Clock:  # the time module, with a fast monotonic clock
        def __getattr__(self, name):
            return getattr(time, name)

        def monotonic(self):
            return next(ticks)

    seen = {}
    original_step = loop.Trainer.train_step

    def step_and_look(self, batch):
        last = tmp_path / "run" / "checkpoints" / "last.ckpt"
        seen[self.step] = load_checkpoint(last)["step"] if last.is_file() else None
        return original_step(self, batch)

    monkeypatch.setattr(loop, "time", Clock())
    monkeypatch.setattr(loop.Trainer, "train_step", step_and_look)
    train(smoke_cfg("trainer.ckpt_every=1000", "trainer.ckpt_every_min=60", "data.eval_resolutions=[]"))
    assert any(step is not None for step in seen.values()), seen


def test_a_window_does_not_subtract_a_pause_that_came_before_its_first_step(monkeypatch):
    """Validation right after a log line pauses before the next window's first step: its time is not the
    window's, and subtracting it anyway made the ms/step after each validation too small."""
    from ginr.engine import loop

    clock = iter([100.0, 110.0, 120.0])  # the first step's tick; then the window is read at 110 and 120
    monkeypatch.setattr(loop.time, "perf_counter", lambda: next(clock))
    window = loop.Window(torch.device("cpu"))
    window.pause(6.0)  # before any step: outside the window
    one = torch.tensor(1.0)
    window.add(1, StepResult(loss=one, psnr=one, grad_norm=one, ok=torch.tensor(True)), next(clock))
    assert window.seconds() == 10.0
    window.pause(4.0)  # inside the window
    assert window.seconds() == 16.0


@pytest.mark.parametrize(
    ("seconds", "text"), [(0.4, "0s"), (42, "42s"), (245, "4m05s"), (3725, "1h02m"), (-3, "0s")]
)
def test_durations_read_as_a_person_writes_them(seconds, text):
    from ginr.engine.loop import duration

    assert duration(seconds) == text
