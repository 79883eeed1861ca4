"""How far a small purpose-built CNN upscaler gets past Lanczos on the photos: a diagnostic for issue #30.

A reference for the GINR model's 2x scores, as tools/photos_linear.py is for linear maps: a residual CNN
in the style of EDSR-baseline (LIIF's backbone), much smaller, on the 32 px input -> a sub-pixel
convolution to 2x, added to the Lanczos upscaling of the same input (it learns the residual). Trained with
Adam and a cosine schedule on fresh random train crops (their real pixels at 2x, 16 crops a step), val
crops scored on the way, the last step's network scored once on the test crops (per-image unclamped PSNR
against the crop's real pixels, beside Lanczos). CPU:
    python tools/photos_cnn_probe.py [--steps 2000] [--width 48] [--blocks 4] [--data-dir .data]
"""

import argparse
import time

import torch
from torch import nn

from ginr.data.photos import Photos
from ginr.engine.metrics import psnr, upscale

SIDE, SCALE, BATCH = 32, 2, 16


class ResBlock(nn.Module):
    def __init__(self, *, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(width, width, 3, padding=1, padding_mode="replicate"),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1, padding_mode="replicate"),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Upscaler(nn.Module):
    """(B, 3, h, w) in [0, 1] -> (B, 3, 2h, 2w): Lanczos plus a learned residual (zero at the start)."""

    def __init__(self, *, width: int, blocks: int) -> None:
        super().__init__()
        self.head = nn.Conv2d(3, width, 3, padding=1, padding_mode="replicate")
        self.body = nn.Sequential(*(ResBlock(width=width) for _ in range(blocks)))
        self.tail = nn.Sequential(nn.Conv2d(width, 3 * SCALE**2, 3, padding=1), nn.PixelShuffle(SCALE))
        nn.init.zeros_(self.tail[0].weight)
        nn.init.zeros_(self.tail[0].bias)

    def forward(self, low: torch.Tensor) -> torch.Tensor:
        features = self.head(low)
        residual = self.tail(features + self.body(features))
        return upscale(low, SCALE * low.shape[-2], SCALE * low.shape[-1], "lanczos") + residual


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--width", type=int, default=48)
    parser.add_argument("--blocks", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--data-dir", default=".data")
    args = parser.parse_args()
    for name in ("steps", "width", "blocks"):
        if getattr(args, name) < 1:
            parser.error(f"--{name}={getattr(args, name)} is not allowed: a positive whole number")
    torch.manual_seed(0)
    data = {
        (split, side): Photos(root=args.data_dir, split=split, resolution=side)
        for split in ("train", "val", "test")
        for side in (SIDE, SCALE * SIDE)
    }

    def crops(split: str, items: range) -> tuple[torch.Tensor, torch.Tensor]:
        return tuple(torch.stack([data[split, side][i] for i in items]) for side in (SIDE, SCALE * SIDE))

    held_out = {split: crops(split, range(len(data[split, SIDE]))) for split in ("val", "test")}
    net = Upscaler(width=args.width, blocks=args.blocks)
    optimizer = torch.optim.Adam(net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, args.steps)

    def score(split: str) -> tuple[float, float, float]:
        """(model, Lanczos, model minus Lanczos's 95% half-width over the crops) at 2x."""
        low, high = held_out[split]
        with torch.no_grad():
            ours = psnr(net(low), high)
        diff = ours - psnr(upscale(low, SCALE * SIDE, SCALE * SIDE, "lanczos"), high)
        return ours.mean().item(), (ours - diff).mean().item(), 1.96 * diff.std().item() / len(diff) ** 0.5

    params = sum(p.numel() for p in net.parameters())
    print(f"{params:,} parameters; val 2x: Lanczos {score('val')[1]:.2f}", flush=True)
    started = time.monotonic()
    for step in range(1, args.steps + 1):
        low, high = crops("train", range((step - 1) * BATCH, step * BATCH))  # a fresh crop each item
        loss = (net(low) - high).square().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step % max(1, args.steps // 8) == 0 or step == args.steps:
            print(
                f"step {step}: val 2x {score('val')[0]:.2f} ({time.monotonic() - started:.0f} s)", flush=True
            )
    ours, lanczos, half = score("test")
    print(
        f"test 2x, step {args.steps}: {ours:.2f}, Lanczos {lanczos:.2f}, minus Lanczos {ours - lanczos:+.2f} ± {half:.2f}"
    )


if __name__ == "__main__":
    main()
