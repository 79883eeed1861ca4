"""What a run writes for people and programs to read: status.json is valid JSON (no NaN), and the log
(train.log under the command line) has a line per log window with the loss and PSNR."""

import json
import logging

import pytest

from ginr.engine.logging import RunLogger
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
def test_each_log_window_is_a_line_with_loss_and_psnr(smoke_cfg, caplog):
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
    assert all("train PSNR" in line and "images/s" in line for line in lines)


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
