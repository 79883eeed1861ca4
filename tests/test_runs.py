"""A run's life off the main path: checkpoints by time, resume into the same run folder from the newest
readable checkpoint, a killed run's status, and Hydra's errors as one line."""

import json
import os
import socket
import subprocess
import sys

import pytest

from ginr.config import ConfigError, compose
from ginr.engine.checkpoint import load_checkpoint, load_for_resume
from ginr.engine.logging import effective_state
from ginr.engine.loop import Trainer
from ginr.tools.variants import data_options
from ginr.train import train
from tests.conftest import DEFAULT_EXPERIMENT, EXPERIMENTS

DATA_OPTIONS = ", ".join(data_options())  # configs/data
TYPO = DEFAULT_EXPERIMENT[:-1]  # the default experiment misspelt: one letter short
UNKNOWN_EXPERIMENT = (
    f"experiment={TYPO} is not allowed: experiment is one of {', '.join(EXPERIMENTS)} "
    f"(did you mean experiment={DEFAULT_EXPERIMENT}?)"
)


@pytest.mark.slow
@pytest.mark.parametrize("minutes", [0.00001, None])
def test_a_kill_before_the_first_step_checkpoint_loses_minutes_not_the_run(
    smoke_cfg, tmp_path, monkeypatch, minutes
):
    """Step-based checkpoints every 1,000 steps: what exists on disk mid-run is the clock's doing."""
    seen: dict[int, int | None] = {}
    original_step = Trainer.train_step

    def step_and_look(self, images):
        last = tmp_path / "run" / "checkpoints" / "last.ckpt"
        seen[self.step] = load_checkpoint(last)["step"] if last.is_file() else None
        return original_step(self, images)

    monkeypatch.setattr(Trainer, "train_step", step_and_look)
    every = "null" if minutes is None else minutes
    train(smoke_cfg("trainer.ckpt_every=1000", f"trainer.ckpt_every_min={every}", "data.eval_resolutions=[]"))
    if minutes is None:
        assert set(seen.values()) == {None}  # a kill at any step before the end would lose the run
    else:
        assert seen[3] == 3  # by step 4, the clock had written step 3


@pytest.mark.slow
def test_resume_falls_back_to_the_newest_readable_checkpoint(smoke_cfg, tmp_path):
    run = tmp_path / "run"
    train(smoke_cfg("data.eval_resolutions=[]"))
    best = load_checkpoint(run / "checkpoints" / "best.ckpt")["step"]
    path, state = load_for_resume(run)
    assert path.name == "last.ckpt" and state["step"] == 6
    (run / "checkpoints" / "last.ckpt").write_bytes(b"truncated by a kill")
    path, state = load_for_resume(run)
    assert path.name == "best.ckpt" and state["step"] == best
    (run / "checkpoints" / "best.ckpt").unlink()
    with pytest.raises(Exception, match="nothing to resume in .*unreadable or corrupt"):
        load_for_resume(run)


def test_resume_auto_starts_continues_or_leaves_a_finished_run(smoke_cfg, tmp_path, monkeypatch, caplog):
    """``trainer.resume=auto``, the way a study is run again: a fresh folder starts, a folder with a
    checkpoint continues from it, and a finished run is not run again (its recorded metrics come back)."""
    run = tmp_path / "run"
    auto = (
        "trainer.resume=auto",
        "data.eval_resolutions=[]",
        "trainer.eval_max_images=4",
        "trainer.test_max_images=4",
    )
    first = train(smoke_cfg(*auto, "trainer.max_steps=2", "trainer.eval_every=2"))
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["step"] == 2 and "test/psnr" in first
    status = json.loads((run / "status.json").read_text())
    (run / "status.json").write_text(json.dumps(status | {"state": "interrupted"}))  # as a kill leaves it
    with caplog.at_level("INFO", logger="ginr.engine.loop"):
        second = train(smoke_cfg(*auto, "trainer.max_steps=4", "trainer.eval_every=2"))
    assert f"resumed from {run / 'checkpoints' / 'last.ckpt'} at step 2" in caplog.text
    assert load_checkpoint(run / "checkpoints" / "last.ckpt")["step"] == 4 and "test/psnr" in second
    monkeypatch.setattr("ginr.train.Trainer", lambda *a, **k: pytest.fail("a finished run was run again"))
    assert (
        train(smoke_cfg(*auto, "trainer.max_steps=4"))
        == json.loads((run / "status.json").read_text())["metrics"]
    )


def test_a_running_status_whose_process_is_gone_reads_as_killed():
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    here = socket.gethostname()
    assert effective_state({"state": "running", "pid": int(gone.stdout), "host": here}) == "killed"
    assert effective_state({"state": "running", "pid": os.getpid(), "host": here}) == "running"
    assert effective_state({"state": "running", "pid": int(gone.stdout), "host": "elsewhere"}) == "running"
    assert effective_state({"state": "finished", "pid": int(gone.stdout), "host": here}) == "finished"


@pytest.mark.parametrize(
    "override, message",
    [
        (f"experiment={TYPO}", UNKNOWN_EXPERIMENT),
        ("data=cifar", f"data=cifar is not allowed: data is one of {DATA_OPTIONS} (did you mean data=cifar10?)"),
        ("trainer.max_step=5", "trainer.max_step is not a config key (did you mean trainer.max_steps?)"),
        ("decoder.bandwidth=[1]", "decoder.bandwidth is not a config key (did you mean decoder.bandwidths?)"),
        ("trainr.max_steps=5", "trainr.max_steps is not a config key (did you mean trainer.max_steps?)"),
    ],
)  # fmt: skip
def test_hydra_errors_become_one_line_with_the_nearest_name(override, message):
    assert TYPO not in EXPERIMENTS
    with pytest.raises(ConfigError) as err:
        compose([override])
    assert str(err.value) == message


@pytest.mark.slow
def test_cli_unknown_group_option_is_one_line_and_exit_code_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", f"experiment={TYPO}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {UNKNOWN_EXPERIMENT}"]
    assert "Traceback" not in proc.stderr and not (tmp_path / "run").exists()  # no run folder for a typo


@pytest.mark.slow
def test_cli_resume_continues_in_the_run_folder(tmp_path, data_dir):
    run = tmp_path / "run"
    common = [sys.executable, "-m", "ginr.train", f"experiment={DEFAULT_EXPERIMENT}", "hardware=cpu", "debug=smoke",
              f"paths.data_dir={data_dir}", "data.eval_resolutions=[]"]  # fmt: skip
    first = subprocess.run([*common, "trainer.max_steps=3", f"hydra.run.dir={run}"],
                           capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    second = subprocess.run([*common, "trainer.max_steps=6", f"trainer.resume={run}"],
                            capture_output=True, text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert second.returncode == 0, second.stderr[-2000:]
    assert not (tmp_path / "outputs").exists()  # no new run folder for the resumed run
    status = json.loads((run / "status.json").read_text())
    assert (status["state"], status["step"]) == ("finished", 6)
    log = (run / "train.log").read_text()
    assert "resumed from" in log and log.count("run directory:") == 2  # one log for both parts
