"""The planner against measured peaks: where its accuracy claim (:mod:`ginr.tools.memory.plan`) comes from.

    python -m ginr.tools.memory.check OUT_DIR [--results RESULTS_JSON] [--budget-s SECONDS]

- on a CUDA machine, every point of :func:`points` (the experiments at the reference configuration, and
  ``scent_ff`` with checkpointing, in fp32, at batch 16 and in the memory-lean mode): the prediction and
  the measured peak of the same step (:func:`ginr.tools.memory.plan.measure_peak`), the planner's table beside it
  in ``OUT_DIR/memory_<point>.txt``;
- with ``--results``, on any machine: the prediction for every training step that a ``python -m ginr.tools.bench``
  run measured (its ``results.json``, e.g. ``experiments/benchmarks/reference.json``), against the
  recorded peak.

Both go to ``OUT_DIR/memory_check.md``: one row per point with the relative error and whether it is within
:data:`TOLERANCE`. Points left when ``--budget-s`` is spent are listed as skipped. Exit status 1 when a
point could not be planned or measured; a miss of the tolerance is reported, not an error.
"""

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from ginr.config import compose, prepare
from ginr.ops import backend
from ginr.tools.memory.plan import measure_peak, plan, report, takes_fused_mixer
from ginr.tools.tables import markdown_table
from ginr.tools.variants import default_variant, variants

TOLERANCE = 0.05
_CKPT = ("decoder.checkpoint=true", "encoder.checkpoint=true")


def points() -> dict[str, tuple[str, ...]]:
    """Every variant of :func:`ginr.tools.variants.variants` (each experiment, and naive attention for
    those whose blocks mix queries) at the reference configuration (bf16), and the default experiment with
    checkpointing, in fp32, at batch 16 and memory-lean."""
    bf16 = "trainer.precision=bf16"
    out = {name: (*overrides, bf16) for name, overrides in variants().items()}
    default = default_variant()
    out |= {
        f"{default}_ckpt": (f"experiment={default}", bf16, *_CKPT),
        f"{default}_fp32": (f"experiment={default}", "trainer.precision=fp32"),
        f"{default}_batch16": (f"experiment={default}", bf16, "data.batch_size=16"),
        f"{default}_lean": (f"experiment={default}", bf16, "trainer.checkpoint_queries=64", _CKPT[1]),
    }
    return out


# the benchmark's cases that run a training step
TRAINING_GROUPS = ("main", "batch", "queries", "lean", "inputs")


def _gb(value: int | None) -> str:
    return "" if value is None else f"{value / 1e9:.3f}"


@dataclass
class Row:
    """One point: what was predicted and measured there, in bytes."""

    name: str
    setting: str
    predicted: int | None = None
    measured: int | None = None
    note: str = ""
    failed: bool = False

    @property
    def error(self) -> float | None:
        if self.predicted is None or not self.measured:
            return None
        return (self.predicted - self.measured) / self.measured

    def cells(self) -> list[str]:
        error = self.error
        verdict = "" if error is None else ("yes" if abs(error) <= TOLERANCE else "**no**")
        cells = [self.name, self.setting, _gb(self.predicted), _gb(self.measured)]
        return cells + ["" if error is None else f"{100 * error:+.1f}%", verdict, self.note]


def _failed(row: Row, err: Exception) -> None:
    row.note = f"failed: {type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
    row.failed = True


def _fill(row: Row, deadline: float, predict: Callable[[Row], bool]) -> Row:
    """``row`` filled by ``predict`` (its numbers; it returns whether the GPU takes the unmodelled fused
    mixer there) unless the time budget is spent; one point's failure is its row, the others still run."""
    if time.monotonic() > deadline:
        row.note = "skipped: time budget spent"
        return row
    fused = False
    try:
        fused = predict(row)
    except Exception as err:
        _failed(row, err)
    if fused and not row.note:
        row.note = "fused mixer: not modelled"
    return row


def check_live(out: Path, deadline: float) -> list[Row]:
    """Every point of :func:`points`, predicted and measured on this GPU."""
    fused = backend.mamba_inner_cuda is not None

    def predict_and_measure(row: Row, overrides: tuple[str, ...]) -> bool:
        cfg = prepare(compose(list(overrides)))
        result = plan(cfg)
        row.predicted = result.total
        try:
            row.measured = measure_peak(cfg)
        except torch.cuda.OutOfMemoryError:
            row.note = "measured: out of memory"
        (out / f"memory_{row.name}.txt").write_text(report(cfg, result, row.measured) + "\n")
        gc.collect()
        torch.cuda.empty_cache()
        return takes_fused_mixer(cfg, fused)

    return [
        _fill(Row(name, " ".join(overrides)), deadline, lambda row, o=overrides: predict_and_measure(row, o))
        for name, overrides in points().items()
    ]


def check_results(path: Path, deadline: float) -> list[Row]:
    """Every training step a ``ginr.tools.bench`` results file recorded a peak for, predicted here for the kernels
    that machine had (with or without causal-conv1d's, from the file's ``scan_kernels``). A record of this
    benchmark lists every override of its config; older ones also need their batch and queries."""
    data = json.loads(path.read_text())
    fused = "causal_conv1d available" in data["meta"].get("scan_kernels", "")

    def predict(row: Row, overrides: list[str], case: dict) -> bool:
        cfg = compose(overrides)
        older = "resolution" not in case  # its batch and queries were not in its overrides
        sizes = {"batch_size": case["batch"], "queries": case["queries"]} if older else {}
        row.predicted = plan(cfg, **sizes, conv_kernel=fused).total
        return takes_fused_mixer(cfg, fused)

    rows = []
    for case in data["cases"]:
        if case["group"] not in TRAINING_GROUPS or case.get("status") != "ok" or case.get("compile"):
            continue
        # the benchmark's own setting of the CPU fallback no longer composes, and does not touch the model
        overrides = [o for o in case["overrides"] if not o.startswith("trainer.cpu_overrides")]
        row = Row(
            case["name"], f"{' '.join(overrides)} (queries {case['queries']})", measured=case["peak_bytes"]
        )
        rows.append(_fill(row, deadline, lambda row, o=overrides, c=case: predict(row, o, c)))
    return rows


def table(title: str, rows: list[Row]) -> str:
    checked = [r for r in rows if r.error is not None and not r.note]
    within = sum(abs(r.error) <= TOLERANCE for r in checked)
    lines = [f"## {title}", "", f"{within} of {len(checked)} points within {TOLERANCE:.0%}", ""]
    header = ["point", "setting", "predicted GB", "measured GB", "error", "within", "note"]
    return "\n".join([*lines, markdown_table(header, [r.cells() for r in rows])])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ginr.tools.memory.check", description=__doc__.splitlines()[0]
    )
    parser.add_argument("out", type=Path, help="where memory_<point>.txt and memory_check.md go")
    parser.add_argument("--results", type=Path, help="a python -m ginr.tools.bench results.json to predict")
    parser.add_argument("--budget-s", type=float, default=float("inf"), help="start no point after this")
    args = parser.parse_args(argv)
    deadline = time.monotonic() + args.budget_s
    runs = []
    if torch.cuda.is_available():
        runs.append(("This GPU: the planner's points", lambda: check_live(args.out, deadline)))
    if args.results is not None:
        runs.append(
            (f"Recorded by the benchmark: {args.results}", lambda: check_results(args.results, deadline))
        )
    if not runs:
        print("error: nothing to check: no CUDA device here and no --results", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    sections = [
        f"# Memory planner against measured peaks\n\nselective-scan kernels here: {backend.KERNEL_STATUS}"
    ]
    failed = False
    for title, run in runs:
        rows = run()
        failed |= any(r.failed for r in rows)
        sections.append(table(title, rows))
        (args.out / "memory_check.md").write_text(
            "\n\n".join(sections) + "\n"
        )  # kept if a later part times out
    print("\n\n".join(sections))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
