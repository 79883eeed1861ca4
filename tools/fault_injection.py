"""Kill a training run at random moments (SIGKILL, SIGTERM, SIGINT), resume it each time, and check that
nothing was lost: the final weights and every logged loss equal those of an uninterrupted run.

    python tools/fault_injection.py [--kills 4] [--steps 24] [--seed 0] [--workdir DIR]

Runs the tiny ``debug=smoke`` model on the CPU in deterministic mode; exits non-zero on any loss.
"""

import argparse
import json
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


def command(run_dir: Path, steps: int, resume: bool) -> list[str]:
    cmd = [
        sys.executable, "-m", "ginr.train", "experiment=scent_ff", "debug=smoke", "trainer.deterministic=true",
        f"trainer.max_steps={steps}", "trainer.log_every=1", "trainer.ckpt_every=1", "trainer.eval_every=1000",
        "data.eval_resolutions=[]", f"hydra.run.dir={run_dir}",
    ]  # fmt: skip
    return cmd + (
        [f"trainer.resume={run_dir}"] if resume and (run_dir / "checkpoints" / "last.ckpt").exists() else []
    )


def losses(run_dir: Path) -> dict[int, float]:
    acc = EventAccumulator(str(run_dir / "tb"), size_guidance={"scalars": 0})
    acc.Reload()
    return {e.step: e.value for e in acc.Scalars("train/loss")}


def status(run_dir: Path) -> dict:
    path = run_dir / "status.json"
    return json.loads(path.read_text()) if path.exists() else {}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=4)
    parser.add_argument("--steps", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="ginr-faults-"))
    reference, victim = work / "reference", work / "victim"

    print(f"uninterrupted reference run in {reference}")
    subprocess.run(command(reference, args.steps, resume=False), check=True, capture_output=True)

    for attempt in range(args.kills):
        sig = SIGNALS[attempt % len(SIGNALS)]
        previous = status(victim).get("step", 0)
        proc = subprocess.Popen(
            command(victim, args.steps, resume=True), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        started = time.time()
        while (
            proc.poll() is None and status(victim).get("step", 0) <= previous and time.time() - started < 120
        ):
            time.sleep(0.05)  # wait until this process has trained a step, then kill it at a random moment
        time.sleep(rng.uniform(0.0, 1.5))
        before = status(victim).get("step")
        if proc.poll() is None:
            proc.send_signal(sig)
        code = proc.wait()
        print(f"kill {attempt + 1}: {sig.name} near step {before}, exit code {code}, "
              f"status {status(victim).get('state')} at step {status(victim).get('step')}")  # fmt: skip

    print("final resume to the end")
    subprocess.run(command(victim, args.steps, resume=True), check=True, capture_output=True)

    problems = []
    final = status(victim)
    if final.get("state") != "finished" or final.get("step") != args.steps:
        problems.append(
            f"final status {final.get('state')} at step {final.get('step')}, expected finished at {args.steps}"
        )
    want, got = losses(reference), losses(victim)
    missing = sorted(set(want) - set(got))
    if missing:
        problems.append(f"loss events missing at steps {missing}")
    differ = [s for s in want if s in got and got[s] != want[s]]
    if differ:
        problems.append(f"losses differ from the uninterrupted run at steps {differ}")
    a = torch.load(reference / "checkpoints" / "last.ckpt", weights_only=False)
    b = torch.load(victim / "checkpoints" / "last.ckpt", weights_only=False)
    bad = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    if bad:
        problems.append(f"final weights differ: {bad[:5]}")
    leftovers = [p.name for p in (victim / "checkpoints").iterdir() if p.name.endswith(".tmp")]
    if leftovers:
        print(f"note: temporary files left by killed writes (harmless, ignored on load): {leftovers}")
    for problem in problems:
        print(f"FAIL: {problem}")
    if not problems:
        print(f"OK: {args.kills} kills, {len(got)} loss events, weights identical to the uninterrupted run")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
