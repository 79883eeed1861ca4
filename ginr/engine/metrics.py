"""Image metrics on (B, C, H, W) values in [0, 1], per image, in float32.

``psnr`` is the GINR protocol's metric (Trans-INR, IPC): predictions as the model gives them,
unclamped. ``psnr(..., clamp=True)`` and ``ssim`` (Wang et al. 2004: 11x11 Gaussian window, sigma 1.5,
K1 0.01, K2 0.03, channels averaged) stand beside it. :func:`score` is how every evaluation scores a
model's output (these three, and the classical upscalers of the same input), :func:`margin` the model's
lead over the best upscaler.
"""

from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

# The classical upscalers every super-resolution number stands beside (PIL, on the 8-bit input).
UPSCALERS = {
    "nearest": Image.Resampling.NEAREST,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
}


def psnr(pred: torch.Tensor, target: torch.Tensor, *, clamp: bool = False) -> torch.Tensor:
    """Per-image PSNR in dB -> (B,); ``clamp`` clips predictions to [0, 1] first."""
    pred = pred.float().clamp(0, 1) if clamp else pred.float()
    mse = (pred - target.float()).square().flatten(1).mean(dim=1)
    return -10 * torch.log10(mse.clamp_min(1e-10))


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    g = g / g.sum()
    return (g[:, None] * g[None, :]).float()


def ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-image SSIM of (B, C, H, W) -> (B,), predictions clamped to [0, 1]; windows that do not fit
    in a small image shrink to its side (valid positions only, no padding)."""
    pred, target = pred.float().clamp(0, 1), target.float()
    channels, height, width = target.shape[1:]
    size = min(11, height, width)
    window = _gaussian_window(size, 1.5 * size / 11).to(target.device).expand(channels, 1, size, size)
    blur = lambda x: F.conv2d(x, window, groups=channels)
    mu_p, mu_t = blur(pred), blur(target)
    var_p = blur(pred * pred) - mu_p**2
    var_t = blur(target * target) - mu_t**2
    cov = blur(pred * target) - mu_p * mu_t
    c1, c2 = 0.01**2, 0.03**2
    index = ((2 * mu_p * mu_t + c1) * (2 * cov + c2)) / ((mu_p**2 + mu_t**2 + c1) * (var_p + var_t + c2))
    return index.flatten(1).mean(dim=1)


def upscale(images: torch.Tensor, height: int, width: int, method: str) -> torch.Tensor:
    """(B, C, h, w) in [0, 1] -> (B, C, height, width) by a classical upscaler of :data:`UPSCALERS`,
    applied by PIL to the 8-bit image (antialiased Lanczos, a = 3; bicubic a = -0.5)."""
    if method not in UPSCALERS:
        raise ValueError(f"upscaler {method!r} is not one of {', '.join(UPSCALERS)}")
    out = []
    for image in (images.detach().float().clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1).cpu().numpy():
        pil = Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)
        array = np.asarray(pil.resize((width, height), UPSCALERS[method]), dtype=np.float32) / 255
        out.append(torch.from_numpy(array.reshape(height, width, -1)).permute(2, 0, 1))
    return torch.stack(out).to(images.device)


def strip_ssim(pred: torch.Tensor, target: torch.Tensor, *, rows: int = 256) -> torch.Tensor:
    """:func:`ssim` computed over strips of ``rows`` rows (overlapping by the window
    less one, weighted by their valid positions): the same value, in a strip's memory rather than the
    image's many times over."""
    height, width = target.shape[-2:]
    if height <= rows + 10 or min(height, width) < 11:
        return ssim(pred, target)
    total = torch.zeros(target.shape[0], device=target.device)
    for top in range(0, height - 10, rows):
        bottom = min(top + rows + 10, height)
        total += ssim(pred[..., top:bottom, :], target[..., top:bottom, :]) * (bottom - top - 10)
    return total / (height - 10)


def score(
    pred: torch.Tensor, truth: torch.Tensor, inputs: torch.Tensor | None = None
) -> dict[str, torch.Tensor]:
    """The scores of a model's output ``pred`` against ``truth``, per image -> ``{key: (B,)}``: ``psnr``
    (unclamped, the protocol's), ``psnr_clamped`` and ``ssim`` (:func:`strip_ssim`); given the ``inputs``
    that ``pred`` was rendered from, also each classical upscaler's PSNR (``nearest``, ``bicubic``,
    ``lanczos``: :data:`UPSCALERS`), upscaling ``inputs`` to ``truth``'s size."""
    scores = {
        "psnr": psnr(pred, truth),
        "psnr_clamped": psnr(pred, truth, clamp=True),
        "ssim": strip_ssim(pred, truth),
    }
    if inputs is not None:
        scores |= {m: psnr(upscale(inputs, *truth.shape[-2:], m), truth) for m in UPSCALERS}
    return scores


def margin(scores: Mapping[str, float | None], suffix: str = "") -> float | None:
    """The model's PSNR minus the best classical upscaler's: ``psnr<suffix>`` less the highest of
    ``<upscaler><suffix>`` in ``scores`` (one image's, or means over images); None where an upscaler's
    score is missing."""
    upscaled = [scores.get(f"{m}{suffix}") for m in UPSCALERS]
    if any(value is None for value in upscaled):
        return None
    return scores[f"psnr{suffix}"] - max(upscaled)
