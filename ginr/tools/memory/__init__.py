"""Memory planner: the peak GPU memory of one training step, predicted from the config alone by running
the real step on fake tensors (:mod:`ginr.tools.memory.simulate`); ``python -m ginr.tools.memory`` is its command,
``python -m ginr.tools.memory.check`` compares it with measured peaks (what it models and how well: :mod:`ginr.tools.memory.plan`)."""

from ginr.tools.memory.plan import MemoryPlan, largest_batch, measure_peak, oom_hint, parse_budget, plan

__all__ = ["MemoryPlan", "largest_batch", "measure_peak", "oom_hint", "parse_budget", "plan"]
