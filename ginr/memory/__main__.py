"""Predict the peak GPU memory of one training step from the config alone.

    python -m ginr.memory experiment=scent_ff [hydra-style overrides...] [budget=24GB]   (or ginr-memory)

Prints the predicted peak by component (and, on a CUDA machine, the measured peak beside it) and, with
``budget=``, the largest ``data.batch_size`` predicted to fit. What the prediction models, and where it
was checked against measured peaks: :mod:`ginr.memory.plan`; the check itself: ``python -m ginr.memory.check``.
"""

import sys

import torch
from hydra.errors import HydraException

from ginr.config import ConfigError, compose
from ginr.memory.plan import _prepared, largest_batch, measure_peak, parse_budget, plan, report


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if any(a in ("-h", "--help") for a in args):
        print(__doc__)
        return 0
    budgets = [a.split("=", 1)[1] for a in args if a.startswith("budget=")]
    overrides = [a for a in args if not a.startswith("budget=")]
    try:
        budget = parse_budget(budgets[-1]) if budgets else None
        cfg = _prepared(compose(overrides))
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
        print(f"largest data.batch_size predicted to fit in {budgets[-1]} ({budget / 1e9:.2f} GB): {fits}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
