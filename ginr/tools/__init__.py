"""The tools around the core: the benchmark (``bench``), the memory planner (``memory``), the comparison of
runs (``compare``), the evaluation and rendering of any images (``evaluate``, ``images``), and the report of
near copies across a dataset's splits (``near_duplicates``).

They reach the core only through its documented seams: ``ginr.config`` (compose and validate),
``ginr.engine.build`` (model, datasets, the training step and its inputs), ``ginr.engine.step`` (the step),
``ginr.engine.evaluation`` and ``ginr.engine.metrics`` (scores), and ``ginr.load`` (a trained run); and,
like every layer, the bottom one's ``ginr.files`` (atomic writes) and ``ginr.coords`` (pixel coordinates,
scale names)."""
