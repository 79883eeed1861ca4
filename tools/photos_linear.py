"""How far a learned *linear* upscaler gets past Lanczos on the photos: a diagnostic for issue #30's targets.

For each output phase (the output pixel's place within its input pixel), a least-squares filter over the
input's 6 x 6 neighbourhood plus the Lanczos value at that pixel, shared by the three channels, is fitted
on random train crops (their real pixels at 2x and 4x) and scored on the test crops (or, with --split val,
the val crops: the reference beside the val scores that select a model's checkpoints) like every model:
per-image unclamped PSNR against the crop's real pixels, beside Lanczos of the same 8-bit input. Lanczos
is one of its inputs, so on the train crops it can only gain; what it gains on test crops is what a
linear map of the 32 px input predicts about the finer pixels. CPU, about a minute:
    python tools/photos_linear.py [--crops 2000] [--data-dir .data] [--split test|val]
"""

import argparse
import itertools
import random
from collections.abc import Iterator

import torch
import torch.nn.functional as F

from ginr.data.photos import Photos
from ginr.engine.metrics import psnr, upscale

WINDOW = 6  # input pixels a side: rows base-2 .. base+3 around the output pixel's input pixel


def windows(low: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N*C*h*w, WINDOW**2): each input pixel's neighbourhood, one row per pixel."""
    n, c, h, w = low.shape
    padded = F.pad(low.reshape(n * c, 1, h, w), (3, 3, 3, 3), mode="replicate")
    grid = F.unfold(padded, WINDOW).reshape(n * c, WINDOW**2, h + 1, w + 1)[:, :, 1:, 1:]
    return grid.permute(0, 2, 3, 1).reshape(-1, WINDOW**2).double()


Phase = tuple[int, int]  # (py, px): an output pixel's place within its input pixel


def at(phase: Phase, scale: int) -> tuple:
    """The index of an image's output pixels at ``phase``."""
    return (..., slice(phase[0], None, scale), slice(phase[1], None, scale))


def phases(low: torch.Tensor, scale: int) -> Iterator[tuple[Phase, torch.Tensor]]:
    """For each output phase: the features (N*C*h*w, WINDOW**2 + 2) of the output pixels there (their input
    pixel's window, their Lanczos value, a constant)."""
    n, c, h, w = low.shape
    near = windows(low)
    lanczos = upscale(low, scale * h, scale * w, "lanczos")
    ones = torch.ones(near.shape[0], 1, dtype=torch.float64)
    for phase in itertools.product(range(scale), repeat=2):
        yield phase, torch.cat([near, lanczos[at(phase, scale)].reshape(-1, 1).double(), ones], dim=1)


def fit(
    low: torch.Tensor, high: torch.Tensor, scale: int, ridge: float = 1e-3, batch: int = 200
) -> dict[Phase, torch.Tensor]:
    """Least-squares filters (WINDOW**2 + 2,) by phase, from inputs (N, C, h, w) to their targets, the
    normal equations summed over batches of crops."""
    gram: dict[Phase, torch.Tensor] = {}
    moment: dict[Phase, torch.Tensor] = {}
    for start in range(0, len(low), batch):
        for phase, x in phases(low[start : start + batch], scale):
            y = high[start : start + batch][at(phase, scale)].reshape(-1).double()
            gram[phase] = gram.get(phase, 0) + x.T @ x
            moment[phase] = moment.get(phase, 0) + x.T @ y
    eye = ridge * torch.eye(WINDOW**2 + 2, dtype=torch.float64)
    return {phase: torch.linalg.solve(gram[phase] + eye, moment[phase]) for phase in gram}


def predict(low: torch.Tensor, filters: dict[Phase, torch.Tensor], scale: int) -> torch.Tensor:
    n, c, h, w = low.shape
    out = torch.empty(n, c, scale * h, scale * w)
    for phase, x in phases(low, scale):
        out[at(phase, scale)] = (x @ filters[phase]).reshape(n, c, h, w).float()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--crops", type=int, default=2000, help="random train crops to fit on")
    parser.add_argument("--data-dir", default=".data")
    parser.add_argument("--resolution", type=int, default=32)
    parser.add_argument("--split", choices=("test", "val"), default="test", help="the crops to score")
    args = parser.parse_args()
    side = args.resolution
    train = {r: Photos(root=args.data_dir, split="train", resolution=r) for r in (side, 2 * side, 4 * side)}
    test = {r: Photos(root=args.data_dir, split=args.split, resolution=r) for r in (side, 2 * side, 4 * side)}
    chosen = random.Random(0).sample(range(len(train[side])), args.crops)
    stack = lambda d, items: torch.stack([d[i] for i in items])
    low = stack(train[side], chosen)
    test_low = stack(test[side], range(len(test[side])))
    split = args.split
    print(f"{len(train[side].photos)} train photos, {args.crops} random crops; {len(test_low)} {split} crops")
    print(f"| scale | linear | Lanczos | linear minus Lanczos (mean, 95% interval over {split} crops) |")
    print("|---|---|---|---|")
    for scale in (2, 4):
        filters = fit(low, stack(train[scale * side], chosen), scale)
        truth = stack(test[scale * side], range(len(test_low)))
        ours = psnr(predict(test_low, filters, scale), truth)
        lanczos = psnr(upscale(test_low, scale * side, scale * side, "lanczos"), truth)
        diff = ours - lanczos
        half = 1.96 * diff.std() / len(diff) ** 0.5
        print(f"| {scale}x | {ours.mean():.2f} | {lanczos.mean():.2f} | {diff.mean():+.2f} ± {half:.2f} |")


if __name__ == "__main__":
    main()
