"""Image metrics. PSNR is per image on values in [0, 1], predictions clamped to [0, 1], then averaged."""

import torch


def psnr(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR in dB of (B, ...) tensors with values in [0, 1] -> (B,)."""
    mse = (pred.clamp(0, 1).float() - target.float()).square().flatten(1).mean(dim=1)
    return -10 * torch.log10(mse.clamp_min(1e-10))
