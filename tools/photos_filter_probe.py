"""How fast the decoder's window filter learns a linear upscaler on its own: a diagnostic for issue #30.

`ginr.models.conditioning.WindowFilter` alone (its features held at zero, so its weights depend on each
query's offset only), over the 6 x 6 input window, on top of the bicubic image skip, trained with Adam on
random train crops of the photos at 2x (every pixel of the 64 px crop a step, 16 crops a step) and
scored on the val crops (per-image unclamped PSNR) beside Lanczos. ``--basis pixels`` weighs the window's
pixels (the filter before e06184f), ``--basis dct`` its 2D DCT coefficients (the filter since). CPU:
    python tools/photos_filter_probe.py --basis dct [--steps 400] [--data-dir .data]
"""

import argparse
import time

import torch

from ginr.coords import pixel_grid
from ginr.data.photos import Photos
from ginr.engine.metrics import psnr, upscale
from ginr.models.conditioning import ImageSkip, InputWindow, WindowFilter

WINDOW, DIM, BATCH = 6, 64, 16


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--basis", choices=("pixels", "dct"), required=True)
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default=".data")
    args = parser.parse_args()
    torch.manual_seed(0)
    data = {
        (split, side): Photos(root=args.data_dir, split=split, resolution=side)
        for split in ("train", "val")
        for side in (32, 64)
    }
    window, skip = InputWindow(dim=1, channels=3, size=WINDOW), ImageSkip(mode="bicubic")
    fit = WindowFilter(dim=DIM, size=WINDOW)
    if args.basis == "pixels":
        fit.basis = torch.eye(WINDOW * WINDOW)
    optimizer = torch.optim.Adam(fit.parameters(), lr=args.lr)
    coords = pixel_grid(64, 64).unsqueeze(0)

    def upscaled(low: torch.Tensor) -> torch.Tensor:
        pixels, offsets = window.gather(low, coords)
        out = skip(fit(torch.zeros(1, coords.shape[1], DIM), pixels, offsets), low, coords)
        return out.transpose(1, 2).reshape(len(low), 3, 64, 64)

    def crops(split: str, items: range) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.stack([data[split, side][i] for i in items]) for side in (32, 64))

    val_low, val_high = crops("val", range(len(data["val", 32])))

    def score() -> float:
        with torch.no_grad():
            return psnr(upscaled(val_low), val_high).mean().item()

    lanczos = psnr(upscale(val_low, 64, 64, "lanczos"), val_high).mean().item()
    print(f"val 2x: Lanczos {lanczos:.2f}, bicubic skip (step 0) {score():.2f}; basis {args.basis}")
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        low, high = crops("train", range((step - 1) * BATCH, step * BATCH))  # a fresh crop each item
        loss = (upscaled(low) - high).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if step in (50, 100, 200, 400, 800, 1200, 2000) or step == args.steps:
            print(f"step {step}: val 2x {score():.2f} ({time.monotonic() - started:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
