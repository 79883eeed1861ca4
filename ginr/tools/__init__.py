"""The tools around the core: the benchmark (``bench``), the memory planner (``memory``), the comparison of
runs (``compare``), and the evaluation and rendering of any images (``evaluate``, ``images``).

They reach the core only through its documented seams: ``ginr.config`` (compose and validate),
``ginr.engine.build`` (model, datasets, the training step and its inputs), ``ginr.engine.step`` (the step),
``ginr.engine.evaluation`` and ``ginr.engine.metrics`` (scores), and ``ginr.load`` (a trained run)."""
