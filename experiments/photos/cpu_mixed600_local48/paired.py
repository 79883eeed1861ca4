"""Paired per-image differences between this folder's evaluations (ginr.tools.evaluate's per_image.csv,
rows matched by index): mean difference and its 95% t interval over the images. One seed per model, so
the intervals hold image-to-image variation only, not training noise. Run from this folder:
    python paired.py > paired.txt
"""

import csv
from pathlib import Path

from ginr.tools.compare.seeds import estimate

PAIRS = [  # (A, B): A - B
    ("mixed_on_photos", "photos_on_photos"),
    ("emoji3d_on_photos", "photos_on_photos"),
    ("mixed_on_emoji3d100", "emoji3d_on_emoji3d100"),
]
SCALES = {"1x": "psnr", "2x": "psnr_64", "4x": "psnr_128", "8x": "psnr_256"}


def read(name: str) -> dict[str, dict[str, str]]:
    with open(Path(__file__).parent / f"{name}.csv") as f:
        return {row["index"]: row for row in csv.DictReader(f)}


def mean(values: list[float]) -> float:
    return sum(values) / len(values)


for a_name, b_name in PAIRS:
    a, b = read(a_name), read(b_name)
    keys = sorted(set(a) & set(b), key=int)
    for scale, column in SCALES.items():
        d = estimate([float(a[k][column]) - float(b[k][column]) for k in keys])
        m, n, half = d.mean, d.n, d.half_width
        lanczos = (
            ""
            if scale == "1x"
            else f", Lanczos {mean([float(a[k]['lanczos' + column[4:]]) for k in keys]):.2f}"
        )
        print(
            f"{a_name} - {b_name} at {scale} ({n} images): {mean([float(a[k][column]) for k in keys]):.2f} - "
            f"{mean([float(b[k][column]) for k in keys]):.2f} = {m:+.2f} [{m - half:+.2f}, {m + half:+.2f}]{lanczos}"
        )
