"""Coordinate convention shared by data, model and rendering.

A pixel (row i, column j) of an H x W image sits at its centre, ``(y, x)`` with
``y = (2 i + 1) / H - 1`` and ``x = (2 j + 1) / W - 1``, so every coordinate lies in (-1, 1) and
grids of different resolutions cover the same square. Values (targets) are in [0, 1].

A query may also carry its pixel's size, ``(y, x, h, w)`` with ``h = 2 / H`` and ``w = 2 / W`` (LIIF's
"cell"): the same point means a different area at another resolution. Decoders with cell conditioning
read it; a query without it is a pixel of the training resolution.

Frequencies (Fourier features) are angular, in radians per unit of this coordinate. Neighbouring pixels of
an ``R``-pixel grid are ``2 / R`` apart, so the grid resolves up to ``nyquist(R) = pi R / 2`` (about 50 at
32 px, 280 at 178 px); configs give decoder bandwidths as fractions of it.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange

Interpolation = Literal["bilinear", "bicubic"]


def pixel_grid(
    height: int, width: int, *, device: torch.device | str | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Pixel-centre coordinates of an ``height x width`` image, row-major: (H * W, 2) as (y, x)."""
    if height < 1 or width < 1:
        raise ValueError(f"grid size must be positive, got height={height}, width={width}")
    ys = (torch.arange(height, device=device, dtype=dtype) * 2 + 1) / height - 1
    xs = (torch.arange(width, device=device, dtype=dtype) * 2 + 1) / width - 1
    return torch.stack(torch.meshgrid(ys, xs, indexing="ij"), dim=-1).reshape(-1, 2)


def with_cells(coords: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(..., 2) pixel centres of an ``height x width`` grid -> (..., 4): each with its pixel's size."""
    cell = torch.tensor([2 / height, 2 / width], device=coords.device, dtype=coords.dtype)
    return torch.cat([coords, cell.expand(*coords.shape[:-1], 2)], dim=-1)


def sample_image(images: torch.Tensor, coords: torch.Tensor, mode: Interpolation) -> torch.Tensor:
    """``images`` (B, C, H, W) interpolated at ``coords`` (B | 1, N, 2) as (y, x) -> (B, N, C), in float32.

    Pixel centres (this module's convention, ``align_corners=False``) return the pixels exactly; between
    them, ``mode`` interpolates; beyond the outer centres, the border pixels extend outwards."""
    grid = coords.float().flip(-1).expand(images.shape[0], -1, -1).unsqueeze(1)  # (B, 1, N, 2) as (x, y)
    values = F.grid_sample(images.float(), grid, mode=mode, padding_mode="border", align_corners=False)
    return rearrange(values, "b c 1 n -> b n c")


def nyquist(resolution: int) -> float:
    """Highest angular frequency (rad per coordinate unit) an ``resolution``-pixel grid resolves."""
    if resolution < 1:
        raise ValueError(f"resolution must be positive, got {resolution}")
    return math.pi * resolution / 2


def scale_tag(resolution: int, input_resolution: int) -> str:
    """How a resolution is named beside the input's: ``x2`` for 64 px from a 32 px input; ``48px`` where
    the resolution is not a multiple (metric tags such as ``val/psnr_x2``)."""
    if resolution % input_resolution == 0:
        return f"x{resolution // input_resolution}"
    return f"{resolution}px"


def image_to_values(images: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H * W, C), in the order of :func:`pixel_grid`."""
    return rearrange(images, "b c h w -> b (h w) c")


def values_to_image(values: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """(B, H * W, C) -> (B, C, H, W); the inverse of :func:`image_to_values`."""
    return rearrange(values, "b (h w) c -> b c h w", h=height, w=width)
