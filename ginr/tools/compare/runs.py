"""Reading runs (status.json and TensorBoard events) into summaries; tables and plots of them."""

from __future__ import annotations

import csv
import json
import os
import re
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from ginr.coords import scale_tag
from ginr.engine.logging import describe_state, read_status
from ginr.engine.metrics import margin
from ginr.tools.tables import markdown_table


@dataclass
class RunSummary:
    path: Path
    name: str
    state: str = "unknown"
    step: int | None = None
    max_steps: int | None = None
    # val PSNR, of the metric that selects the checkpoint (trainer.select_on: 1x "psnr", or "psnr_x2", ...):
    # its best, its last evaluation, and its curve below
    selected_on: str = "psnr"
    best_psnr: float | None = None
    final_psnr: float | None = None
    test_psnr: float | None = None  # test, once at the end, of the checkpoint selected on val
    # test PSNR at each other evaluated resolution, by its scale tag ("x2", or "256px" where it is not a
    # multiple of the input's), and its margin: the PSNR minus the best classical upscaler's
    test_at: dict[str, float] = field(default_factory=dict)
    margin_at: dict[str, float] = field(default_factory=dict)
    params_m: float | None = None
    ms_per_step: float | None = None
    images_per_s: float | None = None
    peak_mem_gb: float | None = None
    gflop_per_step: float | None = None  # matrix FLOPs of one training step, counted at the start
    wall_time_s: float | None = None
    # the val curve of selected_on: (step, seconds since the run's first scalar event, PSNR)
    curve: list[tuple[int, float, float]] = field(default_factory=list)
    config: dict[str, object] = field(default_factory=dict)  # the run's config.yaml, flattened
    dataset: str = "unknown data"  # what the runs of one table share

    @property
    def psnr_x2(self) -> float | None:
        return self.test_at.get("x2")

    @property
    def margin_x2(self) -> float | None:
        return self.margin_at.get("x2")

    @property
    def psnr_x4(self) -> float | None:
        return self.test_at.get("x4")

    @property
    def margin_x4(self) -> float | None:
        return self.margin_at.get("x4")

    @property
    def train_pflop(self) -> float | None:
        """The run's budget in matrix FLOPs (PFLOP): its steps times the FLOPs of one step."""
        return (
            None
            if self.gflop_per_step is None or self.step is None
            else self.gflop_per_step * self.step / 1e6
        )

    @property
    def step_minutes(self) -> float | None:
        """The run's budget in time: its steps at the median logged step time (start-up, compilation and
        evaluation not counted, as ``trainer.train_minutes`` counts)."""
        return (
            None if self.ms_per_step is None or self.step is None else self.ms_per_step * self.step / 60_000
        )


# Config keys that differ between runs without making them different experiments.
NOT_A_DIFFERENCE = ("run_dir", "paths.", "trainer.resume", "logger.", "trainer.eval_", "trainer.test_max",
                    "trainer.log_every", "trainer.ckpt_", "trainer.time_limit_min", "data.num_workers")  # fmt: skip


_SCALE_TAG = re.compile(r"test/(psnr|margin)_(x\d+|\d+px)")  # ginr.coords.scale_tag's names


def is_run(path: Path) -> bool:
    """What the trainer leaves in a run dir, even one that crashed before logging anything."""
    return (path / "status.json").is_file() or (path / "tb").is_dir()


def _natural_key(path: Path) -> list[int | str]:
    # Hydra job dirs are 0, 1, ..., 10: sort them numerically, not as "0, 1, 10, 2".
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", str(path))]


def find_runs(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Run dirs given directly or found recursively under the given dirs, sorted by path.

    Raises FileNotFoundError naming a path that is not an existing directory.
    """
    found: dict[Path, Path] = {}
    for p in map(Path, paths):
        if not p.is_dir():
            raise FileNotFoundError(f"no such directory: {p}")
        for dirpath, dirnames, _ in os.walk(p):
            d = Path(dirpath)
            if is_run(d):
                found.setdefault(d.resolve(), d)
                dirnames.clear()  # a run's own subfolders (tb/, checkpoints) are not runs
            else:
                dirnames.sort()
    return sorted(found.values(), key=_natural_key)


def _read_status(path: Path) -> dict:
    status = read_status(path)
    if not status and (path / "status.json").is_file():  # e.g. caught mid-write by a running trainer
        print(f"warning: unreadable {path / 'status.json'}", file=sys.stderr)
    return status


def _read_config(path: Path) -> dict[str, object]:
    """The run's resolved ``config.yaml`` as ``{dotted.key: value}``; empty if there is none."""
    try:
        tree = yaml.safe_load((path / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    flat: dict[str, object] = {}

    def walk(node: object, prefix: str) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                walk(value, f"{prefix}{key}.")
        else:
            flat[prefix[:-1]] = node

    walk(tree if isinstance(tree, dict) else {}, "")
    return flat


def differing_keys(runs: Sequence[RunSummary], ignore: Sequence[str] = ()) -> list[str]:
    """The config keys whose values tell the runs apart beyond their experiment's name. Experiment files
    change only the decoder, so a decoder key that is constant within each experiment is named by it."""
    keys = sorted({k for r in runs for k in r.config})
    by_name: dict[object, list[RunSummary]] = {}
    for r in runs:
        by_name.setdefault(r.config.get("name"), []).append(r)

    def differs(key: str) -> bool:
        if len({repr(r.config.get(key)) for r in runs}) < 2:
            return False
        within = any(len({repr(r.config.get(key)) for r in group}) > 1 for group in by_name.values())
        return within or not key.startswith("decoder.")

    differ = [
        k for k in keys if k != "name" and k not in ignore and not k.startswith(NOT_A_DIFFERENCE) and differs(k)
    ]  # fmt: skip
    swapped = [k.removesuffix("._target_") for k in differ if k.endswith("._target_")]  # another class there
    return [k for k in differ if k.endswith("._target_") or not k.startswith(tuple(f"{s}." for s in swapped))]


def setting(run: RunSummary, key: str) -> str:
    """``key=value`` of one run, for a label; a section whose class differs between the runs is named by
    its class (``encoder=TransformerEncoder``), not by each of its keys."""
    value = run.config.get(key)
    if key.endswith("._target_"):
        return f"{key.removesuffix('._target_')}={str(value).rsplit('.', 1)[-1]}"
    return f"{key}={value}"


def label_runs(runs: Sequence[RunSummary]) -> None:
    """Name each run with a config by its experiment and the settings that differ between the runs
    (``scent_ff seed=1``), and by its folder where that still leaves two runs with one name."""
    configured = [r for r in runs if r.config]
    differ = differing_keys(configured)
    for r in configured:
        settings = " ".join(setting(r, k) for k in differ)
        r.name = f"{r.config.get('name', r.path.name)} {settings}".strip()
    counts: dict[str, int] = {}
    for r in configured:
        counts[r.name] = counts.get(r.name, 0) + 1
    for r in configured:
        if counts[r.name] > 1:
            r.name = f"{r.name} ({r.path.name})"


def by_dataset(runs: Sequence[RunSummary]) -> dict[str, list[RunSummary]]:
    """Runs grouped by what they trained on: runs of different datasets are not ranked together."""
    groups: dict[str, list[RunSummary]] = {}
    for r in runs:
        groups.setdefault(r.dataset, []).append(r)
    return dict(sorted(groups.items()))


def _read_scalars(tb: Path) -> dict[str, list[tuple[int, float, float]]]:
    """tag -> [(step, wall_time, value)] sorted by step."""
    if not tb.is_dir():
        return {}
    acc = EventAccumulator(str(tb), size_guidance={"scalars": 0})
    acc.Reload()
    return {
        tag: sorted((e.step, e.wall_time, e.value) for e in acc.Scalars(tag)) for tag in acc.Tags()["scalars"]
    }


def evaluated_scales(path: Path) -> dict[str, tuple[float, float | None]]:
    """Test PSNR and margin by scale tag from ``python -m ginr.tools.evaluate RUN``'s record
    (``RUN/eval/results.json``), where it scored the whole test split with the checkpoint selected on val
    (``best``): the resolutions the run's own test did not render. Empty where there is no such record."""
    try:
        record = json.loads((path / "eval" / "results.json").read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    whole_test = record.get("split") == "test" and record.get("images") == record.get("split_images")
    if not whole_test or Path(str(record.get("checkpoint"))).name != "best.ckpt":
        return {}
    sides = [int(key.removeprefix("psnr_")) for key in record if re.fullmatch(r"psnr_\d+", key)]
    return {
        scale_tag(side, record["resolution"]): (record[f"psnr_{side}"], margin(record, f"_{side}"))
        for side in sorted(sides)
    }


def load_run(path: Path, root: Path | None = None) -> RunSummary:
    """Summarise one run dir; `root` is what the fallback name (no status.json) is relative to."""
    path = Path(path)
    status = _read_status(path)
    scalars = _read_scalars(path / "tb")
    name = status.get("name") or (
        os.path.relpath(path.resolve(), Path(root).resolve()) if root else path.name
    )
    run = RunSummary(path=path, name=name, state=describe_state(status))
    run.config = _read_config(path)
    if run.config:
        target = str(run.config.get("data.dataset._target_", "?")).rsplit(".", 1)[-1]
        run.dataset = f"{target} at {run.config.get('data.resolution', '?')} px"

    all_events = [e for events in scalars.values() for e in events]
    t0 = min((e[1] for e in all_events), default=None)
    run.step = status.get("step")
    if run.step is None and all_events:
        run.step = max(e[0] for e in all_events)
    run.max_steps = status.get("max_steps")
    if status.get("params") is not None:
        run.params_m = status["params"] / 1e6
    run.wall_time_s = status.get("wall_time_s")
    if run.wall_time_s is None and all_events:
        run.wall_time_s = max(e[1] for e in all_events) - t0

    vals = {tag: [e[2] for e in events] for tag, events in scalars.items() if events}
    last = lambda tag: vals[tag][-1] if tag in vals else None
    median = lambda tag: statistics.median(vals[tag]) if tag in vals else None
    run.selected_on = str(run.config.get("trainer.select_on") or "psnr")  # what picked best.ckpt
    selected = f"val/{run.selected_on}"
    if selected in vals:
        run.best_psnr, run.final_psnr = max(vals[selected]), last(selected)
        run.curve = [(s, t - t0, v) for s, t, v in scalars[selected]]
    run.test_psnr = last("test/psnr")
    for tag in vals:
        if match := _SCALE_TAG.fullmatch(tag):
            kind, scale = match.groups()
            (run.test_at if kind == "psnr" else run.margin_at)[scale] = last(tag)
    for scale, (psnr, over_best) in evaluated_scales(path).items():  # what the run's own test left out
        if scale not in run.test_at:
            run.test_at[scale] = psnr
            if over_best is not None:
                run.margin_at[scale] = over_best
    run.ms_per_step, run.images_per_s = median("perf/ms_per_step"), median("perf/images_per_s")
    run.peak_mem_gb = max(vals.get("perf/peak_mem_gb", []), default=None)
    run.gflop_per_step = last("perf/gflop_per_step")
    return run


def val_metric(runs: Sequence[RunSummary]) -> str:
    """What the runs' val curves show, each run's selection metric: "val PSNR" (1x), or ``val psnr_x2``."""
    metrics = sorted({r.selected_on for r in runs})
    return "val PSNR" if metrics in ([], ["psnr"]) else f"val {', '.join(metrics)}"


def sort_runs(runs: Sequence[RunSummary]) -> list[RunSummary]:
    """Best val PSNR first (selection reads val); runs without it last (stable, so otherwise in path order)."""
    return sorted(runs, key=lambda r: (r.best_psnr is None, -(r.best_psnr or 0.0)))


def _num(digits: int) -> Callable[[float | None], str]:
    return lambda v: "" if v is None else f"{v:.{digits}f}"


def _step(r: RunSummary) -> str:
    if r.step is None and r.max_steps is None:
        return ""
    return f"{'-' if r.step is None else r.step} / {'-' if r.max_steps is None else r.max_steps}"


# (markdown header, csv header, formatter); an empty string means "missing".
COLUMNS: list[tuple[str, str, Callable[[RunSummary], str]]] = [
    ("run", "run", lambda r: r.name),
    ("state", "state", lambda r: r.state),
    ("step / max_steps", "step", _step),  # to_csv splits this one into step, max_steps
    ("best val PSNR", "best_psnr", lambda r: _num(2)(r.best_psnr)),
    ("final val PSNR", "final_psnr", lambda r: _num(2)(r.final_psnr)),
    ("test PSNR", "test_psnr", lambda r: _num(2)(r.test_psnr)),
    ("test x2", "psnr_x2", lambda r: _num(2)(r.psnr_x2)),
    ("x2 vs best upscaler", "margin_x2", lambda r: "" if r.margin_x2 is None else f"{r.margin_x2:+.2f}"),
    ("test x4", "psnr_x4", lambda r: _num(2)(r.psnr_x4)),
    ("x4 vs best upscaler", "margin_x4", lambda r: "" if r.margin_x4 is None else f"{r.margin_x4:+.2f}"),
    ("params (M)", "params_m", lambda r: _num(2)(r.params_m)),
    ("ms/step", "ms_per_step", lambda r: _num(1)(r.ms_per_step)),
    ("images/s", "images_per_s", lambda r: _num(0)(r.images_per_s)),
    ("peak mem (GB)", "peak_mem_gb", lambda r: _num(2)(r.peak_mem_gb)),
    ("wall (s)", "wall_time_s", lambda r: _num(0)(r.wall_time_s)),
]


def to_markdown(rows: Sequence[RunSummary]) -> str:
    """Markdown table with padded columns; the run name and state left-aligned, numbers right-aligned."""
    header = [h for h, _, _ in COLUMNS]
    cells = [[fmt(r) or "-" for _, _, fmt in COLUMNS] for r in rows]
    return markdown_table(header, cells, align="ll" + "r" * (len(COLUMNS) - 2)) + "\n"


def to_csv(rows: Sequence[RunSummary], path: Path) -> None:
    """The markdown columns, but "step / max_steps" split in two so every cell is a plain number."""
    opt = lambda v: "" if v is None else str(v)
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["run", "state", "step", "max_steps", *(h for _, h, _ in COLUMNS[3:])])
        for r in rows:
            w.writerow(
                [r.name, r.state, opt(r.step), opt(r.max_steps), *(fmt(r) for _, _, fmt in COLUMNS[3:])]
            )


def plot(runs: Sequence[RunSummary], path: Path, x: Literal["step", "time"] = "step") -> None:
    """Test PSNR against `x` ("step" or "time": seconds since the run's first event), one line per run."""
    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    col = 0 if x == "step" else 1
    plotted = [r for r in runs if r.curve]
    for r in plotted:
        ax.plot([p[col] for p in r.curve], [p[2] for p in r.curve], marker=".", label=r.name)
    ax.set_xlabel("step" if x == "step" else "wall-clock time (s)")
    ax.set_ylabel(f"{val_metric(plotted)} (dB)")
    ax.grid(alpha=0.3)
    if plotted:
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, frameon=False)
    else:
        ax.text(0.5, 0.5, "no val/psnr scalars", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(path, dpi=120, bbox_inches="tight")
