"""Benchmarks of the training step, the encoder and renders per variant: ``python -m ginr.tools.bench``."""
