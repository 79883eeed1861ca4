"""The multirun launchers: one job per GPU slot at a time, failures recorded and not fatal; the SLURM
launcher config, as far as it can be checked without a cluster."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from ginr.config import CONFIG_DIR
from hydra_plugins.ginr_launcher.gpus import GPULauncher, slots
from tests.conftest import EXPERIMENTS

# A stand-in for `python -m ginr.train`: notes its device and the jobs running beside it, fails on "fail".
JOB = """
import os, sys, time
from pathlib import Path
run_dir = Path(next(a.split("=", 1)[1] for a in sys.argv if a.startswith("hydra.run.dir=")))
lock = run_dir.parent / "running"
lock.mkdir(exist_ok=True)
mine = run_dir / "device.txt"
mine.write_text(os.environ.get("CUDA_VISIBLE_DEVICES", "cpu"))
os.replace(mine, lock / run_dir.name)  # whole, so a job beside this one never reads it half-written
time.sleep(0.3)
beside = []
for p in lock.iterdir():
    try:
        beside.append(p.read_text())
    except FileNotFoundError:  # that job finished between iterdir() and read_text()
        pass
beside.sort()
(run_dir / "seen.txt").write_text(",".join(beside))
(lock / run_dir.name).unlink()
sys.exit(3 if "fail" in sys.argv else 0)
"""


def test_slots_spread_jobs_over_gpus_first():
    assert slots([0, 1, 2], 2, 1) == ["0", "1", "2", "0", "1", "2"]
    assert slots([], 1, 3) == [None, None, None]
    with pytest.raises(ValueError, match="jobs_per_gpu and cpu_jobs must be >= 1, got 0 and 1"):
        slots([0], 0, 1)


def test_jobs_run_on_distinct_gpus_and_a_failing_job_is_recorded(tmp_path: Path):
    script = tmp_path / "job.py"
    script.write_text(JOB)
    launcher = GPULauncher(gpus=[4, 5], command=[sys.executable, str(script)])
    launcher.setup(hydra_context=None, task_function=None,
                   config=OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))  # fmt: skip
    overrides = [["seed=0"], ["seed=1", "fail"], ["seed=2"], ["seed=3"], ["seed=4"]]
    returns = launcher.launch(overrides, initial_job_idx=0)
    assert [r.return_value["returncode"] for r in returns] == [0, 3, 0, 0, 0]  # the sweep went on
    records = json.loads((tmp_path / "sweep" / "jobs.json").read_text())
    assert [r["job"] for r in records] == [0, 1, 2, 3, 4]
    assert {r["device"] for r in records} == {"4", "5"}
    for job in range(5):  # never two jobs on one GPU at once
        seen = (tmp_path / "sweep" / str(job) / "seen.txt").read_text().split(",")
        assert len(seen) == len(set(seen)) <= 2
    assert records[1]["returncode"] == 3 and Path(records[1]["log"]).is_file()


@pytest.mark.parametrize("sweep", sorted(p.stem for p in (CONFIG_DIR / "sweep").glob("*.yaml")))
def test_sweeps_run_on_the_gpu_launcher(sweep):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"sweep={sweep}"], return_hydra_config=True)
    assert cfg.hydra.launcher._target_ == "hydra_plugins.ginr_launcher.gpus.GPULauncher"
    params = cfg.hydra.sweeper.params
    assert params.experiment == ("scent_ff" if "encoder" in params else "glob(*)")
    if sweep in ("decoder_study", "long_study", "long_encoders"):  # the studies: three seeds each
        assert params.seed == "0,1,2"
    if sweep.startswith("long_"):  # a researcher's budget, resumable by running the command again
        assert (cfg.trainer.train_minutes, cfg.trainer.resume) == (20, "auto")
    if sweep == "long_encoders":
        assert params.encoder == "transformer,mamba2"
    if sweep == "encoders":  # every encoder config, one job at a time on one GPU
        encoders = sorted(p.stem for p in (CONFIG_DIR / "encoder").glob("*.yaml"))
        assert sorted(params.encoder.split(",")) == encoders and cfg.hydra.launcher.jobs_per_gpu == 1
        assert (params.seed, cfg.trainer.resume) == ("0,1", "auto")


def test_slurm_launcher_config_asks_one_gpu_per_job_and_overrides_the_sweeps_launcher():
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        cfg = compose("train", overrides=["sweep=decoder_study", "hydra/launcher=slurm", "hydra.launcher.partition=gpu"],
                      return_hydra_config=True)  # fmt: skip
    launcher = cfg.hydra.launcher
    assert launcher._target_ == "hydra_plugins.hydra_submitit_launcher.submitit_launcher.SlurmLauncher"
    assert (launcher.gpus_per_node, launcher.tasks_per_node, launcher.partition) == (1, 1, "gpu")


@pytest.mark.slow
def test_a_sweep_runs_through_submitit(tmp_path, data_dir):
    """The SLURM launcher's machinery without SLURM: submitit's local executor pickles and runs the
    training task of each job, as it would on a cluster node."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    proc = subprocess.run(
        [sys.executable, "-m", "ginr.train", "-m", f"experiment={','.join(EXPERIMENTS[:2])}", "debug=smoke", "hardware=cpu",
         "trainer.max_steps=2", "data.eval_resolutions=[]", f"paths.data_dir={data_dir}",
         "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=5", f"hydra.sweep.dir={tmp_path}"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    for job in ("0", "1"):
        status = json.loads((tmp_path / job / "status.json").read_text())
        assert status["state"] == "finished" and status["step"] == 2 and "test/psnr" in status["metrics"]


@pytest.mark.slow
def test_a_long_study_run_again_leaves_its_finished_jobs(tmp_path, data_dir):
    """sweep=long_study at a tiny budget on the CPU, twice in one folder: the second call finds every job
    finished (trainer.resume=auto in fixed job folders) and runs none again."""
    command = [sys.executable, "-m", "ginr.train", "sweep=long_study", "debug=smoke", "hardware=cpu",
               "hydra.sweeper.params={seed:'0,1',experiment:'" + EXPERIMENTS[0] + "'}", "trainer.train_minutes=0.05",
               "trainer.max_steps=100000", "optim.warmup_steps=60", "trainer.eval_every=20", "trainer.eval_max_images=4",
               "trainer.test_max_images=4", "data.eval_resolutions=[]", f"paths.data_dir={data_dir}",
               "hydra.launcher.cpu_jobs=2", f"hydra.sweep.dir={tmp_path}"]  # fmt: skip
    for call in range(2):
        proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        statuses = [json.loads((tmp_path / str(job) / "status.json").read_text()) for job in (0, 1)]
        assert [s["state"] for s in statuses] == ["finished", "finished"]
        again = [(tmp_path / str(job) / "job.log").read_text().count("not run again") for job in (0, 1)]
        assert again == [call, call]  # the first call trains both, the second neither
