"""Predict the peak GPU memory of one training step from the config alone.

    python -m ginr.tools.memory [config overrides, as for ginr.train...] [--budget 24GB]   (or ginr-memory)

Prints the predicted peak by component (and, on a CUDA machine, the measured peak beside it) and, with
``--budget``, the largest ``data.batch_size`` predicted to fit. What the prediction models, and where it
was checked against measured peaks: :mod:`ginr.tools.memory.plan`; the check itself: ``python -m ginr.tools.memory.check``.
"""

import argparse
import sys

import torch
from hydra.errors import HydraException

from ginr.config import ConfigError, compose, prepare
from ginr.tools.memory.plan import largest_batch, measure_peak, parse_budget, plan, report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ginr.tools.memory", description=__doc__.split("\n\n")[0])
    parser.add_argument("overrides", nargs="*", help="config overrides, as for python -m ginr.train")
    parser.add_argument("--budget", help="GPU memory to fit in, e.g. 24GB, 24GiB or 500MB")
    args = parser.parse_args(argv)
    try:
        budget = parse_budget(args.budget) if args.budget is not None else None
        cfg = prepare(compose(args.overrides))
    except (ValueError, ConfigError, HydraException) as err:
        print(f"error: {(str(err).strip().splitlines() or [type(err).__name__])[0]}", file=sys.stderr)
        return 2
    result = plan(cfg)
    measured = None
    if torch.cuda.is_available():
        try:
            measured = measure_peak(cfg)
        except torch.cuda.OutOfMemoryError:
            print("measured: out of memory on this GPU")
    print(report(cfg, result, measured))
    if budget is not None:
        fits = largest_batch(cfg, budget)
        print(f"largest data.batch_size predicted to fit in {args.budget} ({budget / 1e9:.2f} GB): {fits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
