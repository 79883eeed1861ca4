# ruff: noqa: E501  (the expected markdown table is wider than the line limit)
import csv
import json
from pathlib import Path

import pytest
from torch.utils.tensorboard import SummaryWriter

from ginr.tools.compare import runs as compare
from ginr.tools.compare.__main__ import main as compare_main
from tests.conftest import DEFAULT_EXPERIMENT, EXPERIMENTS

T0 = 1_700_000_000.0


def write_run(run: Path, scalars: dict[str, list[tuple[int, float]]], status: dict | None) -> Path:
    """A run dir as the trainer writes it; event wall time = T0 + step / 10 for determinism."""
    run.mkdir(parents=True)
    with SummaryWriter(str(run / "tb")) as w:
        for tag, points in scalars.items():
            for step, value in points:
                w.add_scalar(tag, value, step, walltime=T0 + step / 10)
    if status is not None:
        (run / "status.json").write_text(json.dumps(status))
    return run


def status(name: str, state: str, step: int, **kw) -> dict:
    base = {"name": name, "state": state, "step": step, "max_steps": 1000, "params": None}
    return base | {"wall_time_s": None, "error": None} | kw


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    mr = tmp_path / "multirun" / "2026-11-22" / "10-00-00"
    write_run(
        mr / "0",
        {
            "val/psnr": [(100, 20.0), (200, 25.0), (300, 24.0)],
            "test/psnr": [(300, 24.5)],
            "test/psnr_x2": [(300, 23.456)],
            "test/margin_x2": [(300, -1.25)],
            "test/psnr_x4": [(300, 21.0)],
            "test/margin_x4": [(300, 0.5)],
            "train/loss": [(100, 0.5), (300, 0.1)],
            "perf/ms_per_step": [(100, 50.0), (200, 12.3), (300, 10.0)],
            "perf/images_per_s": [(100, 100.0), (200, 200.0), (300, 150.0)],
            "perf/peak_mem_gb": [(100, 1.5), (200, 2.25), (300, 2.0)],
            "perf/gflop_per_step": [(100, 500.0)],
        },
        status("A", "finished", 1000, params=1_234_567, wall_time_s=123.4),
    )
    write_run(
        mr / "1",
        {"val/psnr": [(100, 18.0), (200, 22.0)], "perf/ms_per_step": [(100, 20.0), (200, 30.0)]},
        status("B", "running", 250, params=2_500_000),
    )
    write_run(
        mr / "2",
        {"train/loss": [(10, 1.0), (20, 0.9)]},
        status("C", "failed", 20, error="CUDA out of memory"),
    )
    # no status.json: named by its path relative to the common parent, wall time from the events
    write_run(tmp_path / "loose" / "d", {"val/psnr": [(50, 21.0), (650, 19.0)]}, None)
    return tmp_path


EXPECTED_MD = """\
| run     | state    | step / max_steps | best val PSNR | final val PSNR | test PSNR | test x2 | x2 vs best upscaler | test x4 | x4 vs best upscaler | params (M) | ms/step | images/s | peak mem (GB) | wall (s) |
| ------- | -------- | ---------------: | ------------: | -------------: | --------: | ------: | ------------------: | ------: | ------------------: | ---------: | ------: | -------: | ------------: | -------: |
| A       | finished |      1000 / 1000 |         25.00 |          24.00 |     24.50 |   23.46 |               -1.25 |   21.00 |               +0.50 |       1.23 |    12.3 |      150 |          2.25 |      123 |
| B       | running  |       250 / 1000 |         22.00 |          22.00 |         - |       - |                   - |       - |                   - |       2.50 |    25.0 |        - |             - |       10 |
| loose/d | unknown  |          650 / - |         21.00 |          19.00 |         - |       - |                   - |       - |                   - |          - |       - |        - |             - |       60 |
| C       | failed   |        20 / 1000 |             - |              - |         - |       - |                   - |       - |                   - |          - |       - |        - |             - |        1 |
"""


def test_main_writes_table_csv_and_plots(runs: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    assert compare_main([str(runs / "multirun"), str(runs / "loose" / "d"), "--out", str(out)]) == 0

    md = (out / "compare.md").read_text()
    assert md == EXPECTED_MD
    assert capsys.readouterr().out == EXPECTED_MD

    with open(out / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["A", "B", "loose/d", "C"]
    assert [r["state"] for r in rows] == ["finished", "running", "unknown", "failed"]
    a, b, d, c = rows
    assert (a["step"], a["max_steps"], a["best_psnr"], a["final_psnr"]) == ("1000", "1000", "25.00", "24.00")
    assert (a["psnr_x2"], a["psnr_x4"], a["params_m"]) == ("23.46", "21.00", "1.23")
    assert (a["test_psnr"], a["margin_x2"], a["margin_x4"]) == ("24.50", "-1.25", "+0.50")
    assert (a["ms_per_step"], a["images_per_s"], a["peak_mem_gb"], a["wall_time_s"]) == (
        "12.3",
        "150",
        "2.25",
        "123",
    )
    assert (b["best_psnr"], b["final_psnr"], b["ms_per_step"], b["peak_mem_gb"]) == (
        "22.00",
        "22.00",
        "25.0",
        "",
    )
    assert (d["step"], d["max_steps"], d["best_psnr"], d["final_psnr"], d["wall_time_s"]) == (
        "650",
        "",
        "21.00",
        "19.00",
        "60",
    )
    assert (c["best_psnr"], c["final_psnr"], c["psnr_x2"], c["wall_time_s"]) == ("", "", "", "1")

    for png in ("psnr_vs_step.png", "psnr_vs_time.png"):
        data = (out / png).read_bytes()
        assert data.startswith(b"\x89PNG") and len(data) > 1000


def test_load_run_curve_and_summary(runs: Path) -> None:
    run = compare.load_run(runs / "multirun" / "2026-11-22" / "10-00-00" / "0")
    assert (run.name, run.state, run.best_psnr, run.final_psnr) == ("A", "finished", 25.0, 24.0)
    assert run.curve == [(100, 0.0, 20.0), (200, 10.0, 25.0), (300, 20.0, 24.0)]
    assert run.ms_per_step == pytest.approx(12.3) and run.peak_mem_gb == 2.25
    # the budget: 1000 steps of 500 GFLOP at the median 12.3 ms
    assert run.train_pflop == pytest.approx(0.5) and run.step_minutes == pytest.approx(12.3 * 1000 / 60_000)


def test_find_runs_recurses_into_multirun(runs: Path) -> None:
    mr = runs / "multirun"
    assert compare.find_runs([mr]) == [mr / "2026-11-22" / "10-00-00" / str(i) for i in range(3)]
    # a run dir given directly, given twice, and found again under a parent: listed once, sorted by path
    found = compare.find_runs([runs / "loose" / "d", runs, runs / "loose" / "d"])
    assert len(found) == 4 and found == sorted(found, key=str)


def test_default_out_is_the_single_input_dir(runs: Path, capsys) -> None:
    mr = runs / "multirun"
    assert compare_main([str(mr)]) == 0
    assert {"compare.md", "compare.csv", "psnr_vs_step.png", "psnr_vs_time.png"} <= {
        p.name for p in mr.iterdir()
    }
    assert "| A " in capsys.readouterr().out


def test_no_test_psnr_still_plots(tmp_path: Path, capsys) -> None:
    write_run(tmp_path / "r", {"train/loss": [(1, 1.0)]}, status("only", "failed", 1))
    assert compare_main([str(tmp_path / "r"), "--out", str(tmp_path / "o")]) == 0
    assert (tmp_path / "o" / "psnr_vs_step.png").stat().st_size > 0


@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_bad_input_exits_2_naming_the_path(tmp_path: Path, capsys, kind: str) -> None:
    path = tmp_path / "nope"
    if kind == "empty":
        path.mkdir()
    with pytest.raises(SystemExit) as exc:
        compare_main([str(path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert str(path) in err and err.count("\n") == 1


def test_labels_name_what_differs_and_datasets_are_ranked_apart(tmp_path: Path, capsys) -> None:
    from omegaconf import OmegaConf

    from ginr.config import compose

    settings = {"a": ["seed=0"], "b": ["seed=1"], "c": ["seed=1"], "d": ["data=cifar10", "seed=1"]}
    for folder, overrides in settings.items():
        run = write_run(tmp_path / "runs" / folder, {"val/psnr": [(10, 20.0 + len(folder))]}, None)
        cfg = compose([f"experiment={DEFAULT_EXPERIMENT}", "hardware=cpu", f"run_dir={run}", *overrides])
        (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    assert compare_main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "compare.md").read_text()
    assert "## CIFAR10 at 32 px" in md and "## Emoji3D at 32 px" in md  # one ranking per dataset
    with open(tmp_path / "out" / "compare.csv", newline="") as f:
        names = [row["run"] for row in csv.DictReader(f)]
    # within a dataset: the experiment and what differs; two identical settings by their folders
    name = DEFAULT_EXPERIMENT
    assert sorted(names) == [name, f"{name} seed=0", f"{name} seed=1 (b)", f"{name} seed=1 (c)"]


def test_interval_arithmetic_on_known_spread() -> None:
    from ginr.tools.compare.seeds import difference, estimate, t_quantile

    est = estimate([1.0, 2.0, 3.0])  # mean 2, sd 1, n 3: half-width t(2) / sqrt(3)
    assert est.mean == pytest.approx(2.0) and est.half_width == pytest.approx(4.303 / 3**0.5, rel=1e-4)
    assert str(est) == "2.00 ± 2.48"
    assert estimate([5.0]).half_width is None
    assert t_quantile(4) == pytest.approx(2.776) and t_quantile(1000) == pytest.approx(1.96)
    with pytest.raises(ValueError, match="degrees of freedom must be >= 1, got 0"):
        t_quantile(0)
    # paired by seed: a constant per-seed difference has no spread, however much the seeds vary
    a = [(0, 10.0), (1, 20.0), (2, 30.0)]
    b = [(0, 9.0), (1, 19.0), (2, 29.0)]
    paired, kind = difference(a, b)
    assert kind == "paired" and paired.mean == pytest.approx(1.0) and paired.half_width == pytest.approx(0.0)
    # other seeds: Welch's interval, wide because the seeds spread by 10 dB
    welch, kind = difference(a, [(3, 9.0), (4, 19.0), (5, 29.0)])
    assert kind == "Welch" and welch.mean == pytest.approx(1.0)
    se = (2 * 100 / 3) ** 0.5  # both variances 100, n 3; Welch df = 4
    assert welch.half_width == pytest.approx(2.776 * se, rel=1e-4)


def test_synthetic_study_recovers_its_spread_and_ranks_variants(tmp_path: Path, capsys) -> None:
    """Three seeds per variant with values known in advance: compare reports their mean and interval."""
    from omegaconf import OmegaConf

    from ginr.config import compose

    first, second, third = EXPERIMENTS[:3]  # any three variants: the values are made up
    psnr = {first: [27.0, 28.0, 29.0], second: [24.0, 25.5, 27.0], third: [20.0, 21.0, 22.0]}
    for experiment, values in psnr.items():
        for seed, value in enumerate(values):
            test = [] if (experiment, seed) == (third, 2) else [(20, value - 0.5)]  # stopped before its test
            run = write_run(
                tmp_path / "study" / f"{experiment}_{seed}",
                {"val/psnr": [(10, value - 1.0), (20, value)], "test/psnr": test},
                status(experiment, "finished", 20),
            )
            cfg = compose([f"experiment={experiment}", "hardware=cpu", f"run_dir={run}", f"seed={seed}"])
            (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    assert compare_main([str(tmp_path / "study"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "seeds.md").read_text()
    half = 4.303 / 3**0.5  # sd 1 over 3 seeds
    assert f"| {first} | 3 | 28.00 ± {half:.2f} | 27.50 ± {half:.2f} |" in md
    assert f"| {second} | 3 | 25.50 ± {1.5 * half:.2f} |" in md
    assert f"| {third} | 3 | 21.00 ± {half:.2f} | 20.00 ± {12.706 * 0.5:.2f} (n=2) |" in md  # says n
    # paired by seed: differences 3.0, 2.5, 2.0 -> mean 2.5, sd 0.5
    assert (
        f"| {first} | {second} | +2.50 | [{2.5 - 0.5 * half:+.2f}, {2.5 + 0.5 * half:+.2f}] | paired |" in md
    )
    assert "### Minutes to reach val PSNR" in md and "minutes to 28 dB" in md
    for name in ("seeds.csv", "psnr_vs_step_seeds.png", "psnr_vs_time_seeds.png", "test_psnr_seeds.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_minutes_to_reach_a_val_psnr_over_seeds() -> None:
    """The first evaluation at or above each level, in minutes; a seed that never gets there is counted
    out, and the table says so."""
    from ginr.tools.compare.seeds import Variant, minutes_to, time_to_psnr

    def run(*points: tuple[float, float]) -> compare.RunSummary:  # (minutes, val PSNR)
        curve = [(100 * (i + 1), 60 * minutes, psnr) for i, (minutes, psnr) in enumerate(points)]
        return compare.RunSummary(path=Path("r"), name="r", curve=curve)

    fast = Variant(
        "fast", [(0, run((1, 27.0), (2, 29.0), (3, 31.0))), (1, run((1, 28.5), (2, 30.5), (3, 31.5)))]
    )
    slow = Variant("slow", [(0, run((2, 26.0), (4, 28.0))), (1, run((2, 25.0), (4, 27.0)))])
    assert minutes_to(fast.runs[0][1], 28.0) == 2.0 and minutes_to(slow.runs[1][1], 28.0) is None
    table = time_to_psnr([fast, slow], levels=(28.0, 30.0))
    half = 12.706 * 0.5  # two seeds 1 minute apart: sd 0.707, t(1) 12.706, / sqrt(2)
    assert f"| fast | 2 | 1.5 ± {half:.1f} | 2.5 ± {half:.1f} |" in table
    assert "| slow | 2 | 4.0 (1 of 2) | not reached (0 of 2) |" in table


def test_runs_of_different_encoder_classes_are_named_by_the_class(tmp_path: Path, capsys) -> None:
    """A sweep over encoder=...: each run's label names its encoder class, not every key of its section."""
    from omegaconf import OmegaConf

    from ginr.config import compose

    for encoder in ("bimamba", "transformer", "mamba2"):
        run = write_run(tmp_path / "sweep" / encoder, {"val/psnr": [(10, 20.0)]}, status("x", "finished", 10))
        cfg = compose(
            [f"experiment={DEFAULT_EXPERIMENT}", f"encoder={encoder}", "hardware=cpu", f"run_dir={run}"]
        )
        (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    assert compare_main([str(tmp_path / "sweep"), "--out", str(tmp_path / "out")]) == 0
    names = {
        line.split("|")[1].strip() for line in (tmp_path / "out" / "compare.md").read_text().splitlines()[2:]
    }
    classes = ("BiMambaEncoder", "TransformerEncoder", "Mamba2Encoder")
    assert names == {f"{DEFAULT_EXPERIMENT} encoder={c}" for c in classes}


def test_scales_that_are_not_multiples_get_their_intervals_and_differences(tmp_path: Path, capsys) -> None:
    """A 178 px input scored against 256 px images logs ``test/psnr_256px``: the seeds table and the
    paired differences cover it like 2x and 4x."""
    from omegaconf import OmegaConf

    from ginr.config import compose

    first, second = EXPERIMENTS[:2]
    at_256 = {first: [20.0, 22.0], second: [19.0, 20.5]}  # per-seed differences 1.0, 1.5
    for experiment, values in at_256.items():
        for seed, value in enumerate(values):
            tags = {"test/psnr_256px": [(20, value)], "test/margin_256px": [(20, value - 38.0)]}
            run = write_run(
                tmp_path / "study" / f"{experiment}_{seed}",
                {"val/psnr": [(20, value)], "test/psnr": [(20, value + 0.1)], **tags},
                status(experiment, "finished", 20),
            )
            cfg = compose([f"experiment={experiment}", "hardware=cpu", f"run_dir={run}", f"seed={seed}"])
            (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg, resolve=True))
    assert compare_main([str(tmp_path / "study"), "--out", str(tmp_path / "out")]) == 0
    md = (tmp_path / "out" / "seeds.md").read_text()
    half = 12.706  # two seeds 2 dB apart: sd 1.414, / sqrt(2) = 1
    assert "| x4 vs best upscaler | test 256px | 256px vs best upscaler |" in md
    assert f"| - | 21.00 ± {half:.2f} | -17.00 ± {half:.2f} |" in md
    assert "### Differences in test 256px" in md
    half_diff = 12.706 * 0.25  # differences 1.0 and 1.5: sd 0.354, / sqrt(2) = 0.25
    assert (
        f"| {first} | {second} | +1.25 | [{1.25 - half_diff:+.2f}, {1.25 + half_diff:+.2f}] | paired |" in md
    )
    with open(tmp_path / "out" / "seeds.csv", newline="") as f:
        row = next(csv.DictReader(f))
    assert float(row["test 256px mean"]) == pytest.approx(21.0)
    assert "### Differences in test x2" not in md  # no section for a scale no run scored


def test_test_scales_are_ordered_and_each_gets_a_panel() -> None:
    from ginr.tools.compare.seeds import _panels, scales

    def run(**test_at: float) -> compare.RunSummary:
        return compare.RunSummary(path=Path("r"), name="r", test_at=test_at, margin_at={"x2": -1.0})

    runs = [run(x8=1.0, x2=2.0), run(**{"256px": 3.0, "x16": 4.0, "x4": 5.0})]
    assert scales(runs) == ["x2", "x4", "x8", "x16", "256px"]
    panels = _panels(runs)
    assert [title for title, _, _ in panels] == [
        "test 1x",
        "test 2x",
        "test 4x",
        "test 8x",
        "test 16x",
        "test 256px",
    ]
    assert panels[1][2](runs[0]) == 3.0 and panels[2][2](runs[1]) is None  # the upscaler: PSNR minus margin
    assert [title for title, _, _ in _panels([compare.RunSummary(path=Path("r"), name="r")])] == ["test 1x"]


def test_scales_scored_after_training_by_evaluate_join_the_run(tmp_path: Path) -> None:
    """``python -m ginr.tools.evaluate RUN --resolutions ...`` writes ``RUN/eval/results.json``: the scales
    the run's own test did not render join its summary, with their margins; the run's own scores win, and
    a record of part of the split, of val or of another checkpoint is not read."""
    run = write_run(
        tmp_path / "run",
        {"val/psnr": [(10, 30.0)], "test/psnr_x2": [(10, 28.0)], "test/margin_x2": [(10, 0.5)]},
        status("scent_ff", "finished", 10),
    )
    record = {"checkpoint": str(run / "checkpoints" / "best.ckpt"), "split": "test", "images": 54}
    record |= {"split_images": 54, "resolution": 32, "psnr": 40.0, "psnr_64": 27.0}  # x2: the run's own
    record |= {"psnr_128": 25.7, "nearest_128": 23.1, "bicubic_128": 25.0, "lanczos_128": 25.3}
    record |= {"psnr_80": 27.5, "nearest_80": 24.0, "bicubic_80": 27.0}  # no Lanczos: no margin
    (run / "eval").mkdir()
    (run / "eval" / "results.json").write_text(json.dumps(record))
    summary = compare.load_run(run)
    assert summary.test_at == {"x2": 28.0, "x4": 25.7, "80px": 27.5}
    assert summary.margin_at == pytest.approx({"x2": 0.5, "x4": 0.4})
    for change in ({"images": 20}, {"split": "val"}, {"checkpoint": str(run / "checkpoints" / "last.ckpt")}):
        (run / "eval" / "results.json").write_text(json.dumps(record | change))
        assert compare.load_run(run).test_at == {"x2": 28.0}, change


def test_best_val_psnr_is_the_metric_that_selected_the_checkpoint(tmp_path: Path) -> None:
    """``trainer.select_on=psnr_x2`` (the arbitrary-scale recipe) picks best.ckpt on val at 2x: the
    summary's best and final val PSNR and its val curve are that metric's, not the 1x PSNR's."""
    scalars = {"val/psnr": [(10, 40.0), (20, 46.0)], "val/psnr_x2": [(10, 28.4), (20, 28.2)]}
    run = write_run(tmp_path / "run", scalars, status("scent_ff", "finished", 20))
    assert compare.load_run(run).best_psnr == pytest.approx(46.0)  # no config: 1x, the default
    (run / "config.yaml").write_text("trainer:\n  select_on: psnr_x2\n")
    summary = compare.load_run(run)
    assert summary.best_psnr == pytest.approx(28.4) and summary.final_psnr == pytest.approx(28.2)
    assert [p[2] for p in summary.curve] == pytest.approx([28.4, 28.2])  # the curve and its minutes-to-reach
    assert compare.val_metric([summary]) == "val psnr_x2"  # the plots' axis
