"""Compare training runs: a table (markdown + CSV) and PSNR curves from TensorBoard logs.

Usage: python -m ginr.compare RUN_DIRS_OR_MULTIRUN_DIR... [--out DIR]   (or ginr-compare)
"""

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ginr.compare.runs import (
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
    parser = argparse.ArgumentParser(prog="python -m ginr.compare", description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", help="run dirs and/or dirs containing runs (e.g. a multirun dir)")
    parser.add_argument("--out", help="output dir (default: the single input dir, else ./compare)")
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
    print(f"wrote {out}/compare.md, compare.csv, psnr_vs_step.png, psnr_vs_time.png", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
