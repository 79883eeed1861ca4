"""Compare training runs: a table (markdown + CSV) and PSNR curves from TensorBoard logs.

Usage: python -m ginr.tools.compare RUN_DIRS_OR_MULTIRUN_DIR... [--out DIR]   (or ginr-compare)
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ginr.tools.compare import seeds
from ginr.tools.compare.runs import (
    by_dataset,
    find_runs,
    label_runs,
    load_run,
    plot,
    sort_runs,
    to_csv,
    to_markdown,
)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ginr.tools.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run dirs and/or dirs containing runs (e.g. a multirun dir)")
    parser.add_argument("--out", help="output dir (default: the single input dir, else ./compare)")
    parser.add_argument(
        "--levels", type=float, nargs="+", default=list(seeds.LEVELS), metavar="DB",
        help="val PSNR levels whose time to reach each variant's seeds report (default: %(default)s)",
    )  # fmt: skip
    args = parser.parse_args(argv)

    try:
        run_dirs = find_runs(args.paths)
    except FileNotFoundError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    if not run_dirs:
        print(f"{parser.prog}: error: no runs found under {', '.join(args.paths)}", file=sys.stderr)
        raise SystemExit(2)

    root = Path(os.path.commonpath([d.resolve().parent for d in run_dirs]))
    groups = by_dataset([load_run(d, root) for d in run_dirs])
    for group in groups.values():  # labels name what differs between the runs one table ranks
        label_runs(group)
    groups = {data: sort_runs(group) for data, group in groups.items()}
    runs = [r for group in groups.values() for r in group]
    out = Path(args.out) if args.out else Path(args.paths[0]) if len(args.paths) == 1 else Path("compare")
    out.mkdir(parents=True, exist_ok=True)

    if len(groups) == 1:
        table = to_markdown(runs)
    else:  # one ranking per dataset
        table = "\n".join(f"## {data}\n\n{to_markdown(group)}" for data, group in groups.items())
    (out / "compare.md").write_text(table)
    to_csv(runs, out / "compare.csv")
    plot(runs, out / "psnr_vs_step.png", x="step")
    plot(runs, out / "psnr_vs_time.png", x="time")
    print(table, end="")
    written = ["compare.md", "compare.csv", "psnr_vs_step.png", "psnr_vs_time.png"]
    written += write_seeds(groups, out, args.levels)
    print(f"wrote {out}/{', '.join(written)}", file=sys.stderr)
    return 0


def write_seeds(groups: dict[str, list], out: Path, levels: Sequence[float] = seeds.LEVELS) -> list[str]:
    """Where a variant ran with several seeds: mean and 95% interval per variant, the differences between
    variants and the minutes to reach each val PSNR of ``levels``, per dataset (seeds.md, seeds.csv), and
    val PSNR curves with their bands."""
    per_data = {data: seeds.variants(group) for data, group in groups.items()}
    if not any(len(v.runs) > 1 for group in per_data.values() for v in group):
        return []
    sections, rows = [], []
    for data, group in per_data.items():
        sections.append(
            f"## {data}\n\nMean ± half-width of the 95% t interval over seeds.\n\n{seeds.table(group)}"
        )
        for metric in (
            "test PSNR",
            *(f"test {s}" for s in seeds.scales([r for v in group for _, r in v.runs])),
        ):
            sections.append(f"### Differences in {metric}\n\n{seeds.pairwise(group, metric)}")
        sections.append(f"### Minutes to reach val PSNR\n\n{seeds.time_to_psnr(group, levels)}")
        rows += group
    (out / "seeds.md").write_text("\n".join(sections))
    seeds.to_csv(rows, out / "seeds.csv")
    seeds.plot_bands(rows, out / "psnr_vs_step_seeds.png", x="step")
    seeds.plot_bands(rows, out / "psnr_vs_time_seeds.png", x="time")
    seeds.plot_means(rows, out / "test_psnr_seeds.png")
    print("\n".join(sections), end="")
    return [
        "seeds.md",
        "seeds.csv",
        "psnr_vs_step_seeds.png",
        "psnr_vs_time_seeds.png",
        "test_psnr_seeds.png",
    ]


if __name__ == "__main__":
    raise SystemExit(main())
