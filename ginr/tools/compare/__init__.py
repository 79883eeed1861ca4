"""Comparing training runs: a table (markdown + CSV) and PSNR curves, ``python -m ginr.tools.compare``."""
