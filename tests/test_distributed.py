"""torchrun with two CPU processes (gloo): the same losses as one process at the same global batch, and
stops that every rank takes at the same step."""

import json
import multiprocessing
import os
import socket
import subprocess
import sys

import pytest
import torch
import torch.distributed
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ginr.engine.distributed import DistInfo, StopVote
from tests.conftest import DEFAULT_EXPERIMENT


def losses(run_dir):
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return [e.value for e in acc.Scalars("train/loss")]


def run(tmp_path, data_dir, name, nproc, *extra):
    run_dir = tmp_path / name
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    args = ["-m", "ginr.train", f"experiment={DEFAULT_EXPERIMENT}", "debug=smoke", "trainer.log_every=1", "trainer.deterministic=true",
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


def _vote(rank: int, port: int, answers) -> None:
    """Rank 0's clock passes the time limit at step 1, rank 1 is signalled at step 2; they compare every 4."""
    os.environ |= {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    torch.distributed.init_process_group("gloo", rank=rank, world_size=2)
    vote = StopVote(DistInfo(rank, rank, 2), torch.device("cpu"), every=4)
    seen = []
    for step in range(1, 9):
        if (rank, step) == (0, 1):
            vote.request("time limit of 1 min", StopVote.TIME_LIMIT)
        if (rank, step) == (1, 2):
            vote.request("SIGTERM", StopVote.SIGNAL)
        seen.append(vote.agreed(step))
    answers[rank] = (seen, vote.complete)
    torch.distributed.destroy_process_group()


@pytest.mark.slow
def test_every_rank_stops_at_the_same_step_for_the_strongest_request():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        answers = manager.dict()
        procs = [context.Process(target=_vote, args=(rank, port, answers)) for rank in (0, 1)]
        for proc in procs:
            proc.start()
        for proc in procs:
            proc.join(timeout=120)
        assert [proc.exitcode for proc in procs] == [0, 0]
        result = dict(answers)
    assert result[0] == ([None] * 3 + ["signal on another rank"] * 5, False)
    assert result[1] == ([None] * 3 + ["SIGTERM"] * 5, False)


def test_one_process_stops_at_once_and_a_time_limit_completes_the_run():
    vote = StopVote(DistInfo(), torch.device("cpu"), every=4)
    assert vote.agreed(1) is None
    vote.request("time limit of 1 min", StopVote.TIME_LIMIT)
    assert vote.agreed(2) == "time limit of 1 min" and vote.complete
