"""tools/encoder_study.sh: the encoders' quality at equal steps and at equal time (issue #29's study)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ginr.tools.variants import encoders

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "tools" / "encoder_study.sh"


def _study(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=timeout,
        env={**os.environ, "PYTHON": sys.executable, **(env or {})},
    )  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("64", "OUT"), "SIZE=64 is not allowed: 32 or 178"),
        (("32", "OUT", "0"), "STEPS=0 is not allowed: a positive whole number"),
        (("32",), "usage:"),
    ],
)
def test_the_study_refuses_a_bad_argument_before_any_work(tmp_path, args, message):
    done = _study(*(str(tmp_path / a) if a == "OUT" else a for a in args))
    assert done.returncode == 2 and message in done.stderr
    assert not (tmp_path / "OUT").exists()


def test_the_study_refuses_an_unknown_arm_before_any_work(tmp_path):
    done = _study("32", str(tmp_path / "OUT"), env={"ARMS": "steps cost"})
    assert done.returncode == 2 and "ARMS=steps cost is not allowed: steps, time or both" in done.stderr
    assert not (tmp_path / "OUT").exists()


def test_the_study_refuses_a_bench_record_that_is_not_one_before_any_work(tmp_path):
    done = _study("178", str(tmp_path / "OUT"), env={"BENCH": str(tmp_path / "missing.json")})
    assert done.returncode == 2 and "missing.json is not allowed: a bench results.json" in done.stderr
    assert not (tmp_path / "OUT").exists()


def test_recorded_step_times_set_the_equal_time_budget(tmp_path):
    """BENCH=FILE: the budgets come from a recorded bench of this input size, and only of it (the record
    also holds a 32 px case); nothing is timed. The runs are refused at once here (an unknown override),
    so nothing trains."""
    record = tmp_path / "record.json"
    cases = [("bimamba", "emoji3d178", 50.0), ("mamba2", "emoji3d178", 100.0), ("mamba2", "emoji3d", 400.0)]
    record.write_text(json.dumps({"cases": [
        {"name": f"steps/{e}/{d}/compiled", "group": "steps", "compile": True, "variant": e, "ms": ms,
         "status": "ok"} for e, d, ms in cases
    ]}))  # fmt: skip
    out = tmp_path / "OUT"
    done = _study("178", str(out), "10", "no_such_key=1", env={"BENCH": str(record), "ARMS": "steps"})
    assert done.returncode == 0, done.stdout + done.stderr
    assert (out / "bench" / "source.txt").read_text() == f"step times from {record}\n"
    assert (out / "budget.txt").read_text().split() == ["bimamba", "20", "50.00", "mamba2", "10", "100.00"]
    commands = (out / "commands.txt").read_text().splitlines()
    assert len(commands) == 4 and all("trainer.max_steps=10 " in c for c in commands)  # ARMS=steps


@pytest.mark.slow
def test_the_study_gives_each_encoder_equal_steps_and_equal_time(tmp_path, data_dir):
    out = tmp_path / "study"
    small = ["hardware=cpu", "debug=smoke", "trainer.compile=false", "data.eval_resolutions=[64]"]
    done = _study("32", str(out), "6", *small, env={"GINR_DATA_DIR": data_dir, "JOBS": "2"}, timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr

    # the budget: every encoder's step timed, equal time = the slowest encoder's 6 steps
    bench = json.loads((out / "bench" / "results.json").read_text())["cases"]
    ms = {c["variant"]: c["ms"] for c in bench}
    assert set(ms) == set(encoders()) and all(c["status"] == "ok" for c in bench)
    slowest = max(ms, key=ms.get)
    budget = {line.split()[0]: int(line.split()[1]) for line in (out / "budget.txt").read_text().splitlines()}
    assert budget == {e: round(6 * ms[slowest] / t) for e, t in ms.items()}

    # every run trained its budget; the slowest encoder's equal-time runs are its equal-steps runs
    for arm, steps in (("steps", dict.fromkeys(ms, 6)), ("time", budget)):
        for encoder in ms:
            for seed in (0, 1):
                run = out / "runs" / arm / f"{encoder}_s{seed}"
                assert run.is_dir() == (arm == "steps" or encoder != slowest), run
                if run.is_dir():
                    status = json.loads((run / "status.json").read_text())
                    assert (status["state"], status["step"]) == ("finished", steps[encoder])

    # each arm compared across all three encoders, with paired differences
    for arm in ("steps", "time"):
        seeds = (out / arm / "seeds.md").read_text()
        assert "Differences in test PSNR" in seeds and "paired" in seeds
        assert all(
            f"encoder={name}" in seeds for name in ("BiMambaEncoder", "Mamba2Encoder", "TransformerEncoder")
        )
    assert (out / "runs.tgz").stat().st_size > 0
