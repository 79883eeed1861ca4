"""What a decoder adds to a query beyond its coordinates: the size of its pixel (LIIF's cell), an
attention bias towards the latents near it (locality), the input pixels around it (LIIF's unfolding, on
the input) and a filter over them predicted for it, and the input image upscaled at it (LTE's image
skip). Each is off by default; the multi-band decoder takes all five as options, the plain SCENT decoder
all but the locality."""

import math
from typing import Literal

import torch
from einops import rearrange
from torch import nn

from ginr.constraints import NonNegative, Positive
from ginr.coords import Interpolation, sample_image


class LocalityBias(nn.Module):
    """Additive attention bias ``-strength * (distance / spacing)^2`` between each query and each latent's
    place in the image (``positions``, (M, 2) as (y, x): the encoder's ``latent_coords``), so a query
    attends more to the latents near it. ``spacing = 2 / sqrt(M)``, the side of each latent's share of the
    [-1, 1]^2 square: one latent step on a square grid of latents."""

    def __init__(self, *, positions: torch.Tensor, strength: NonNegative):
        super().__init__()
        if positions.dim() != 2 or positions.shape[-1] != 2:
            raise ValueError(
                f"locality bias needs latent positions of shape (M, 2), got {tuple(positions.shape)}"
            )
        self.register_buffer("positions", positions.float(), persistent=False)
        self.scale = strength * positions.shape[0] / 4  # strength / spacing^2

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (B, N, 2) -> bias (B, 1, N, M)."""
        distance = torch.cdist(coords.to(self.positions.dtype), self.positions)
        return -self.scale * distance.square().unsqueeze(1)


class CellSize(nn.Module):
    """LIIF's cell conditioning: the size of a query's pixel (columns 3-4 of its coordinates; queries
    without them are pixels of the training ``resolution``) as log2 of its ratio to a training pixel,
    0 at 1x, -1 at 2x, -2 at 4x, embedded and added to the query. Zero-initialised: a new model decodes
    as one without it."""

    def __init__(self, *, dim: Positive, resolution: Positive):
        super().__init__()
        self.resolution = resolution
        self.proj = nn.Linear(2, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, cells: torch.Tensor) -> torch.Tensor:
        """cells (B | 1, N, 2), or (B | 1, N, 0) for training pixels -> (B | 1, N | 1, dim)."""
        if cells.shape[-1] == 0:
            return self.proj.bias
        return self.proj(torch.log2(cells.float() * (self.resolution / 2)).to(self.proj.weight.dtype))


class InputWindow(nn.Module):
    """LIIF's feature unfolding and relative coordinate, on the input's pixels: the ``size`` x ``size``
    input pixels nearest each query (the border pixels extend outwards) and the query's offset, in pixels,
    from the centre of the window's base pixel (an odd window's middle pixel, the query's own; an even
    window's is the one of the middle four at or above-left of the query), projected and added to the
    query. It gives the decoder the input's exact neighbourhood, which the latents carry only through
    their bottleneck. Zero-initialised: a new model decodes as one without it."""

    def __init__(self, *, dim: Positive, channels: Positive, size: Positive):
        super().__init__()
        self.size = size
        self.proj = nn.Linear(channels * size * size + 2, dim)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def gather(self, images: torch.Tensor, coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """images (B, C, H, W), coords (B | 1, N, 2) as (y, x) -> (the window's pixels (B, N, C, size^2),
        the offsets (B, N, 2))."""
        batch, channels, height, width = images.shape
        sides = torch.tensor([height, width], device=coords.device, dtype=torch.float32)
        position = (coords.float() + 1) * sides / 2 - 0.5  # in pixels: pixel i's centre is at i
        base = (position + 0.5 * (self.size % 2)).floor()  # odd: the nearest pixel; even: at or before it
        steps = torch.arange(self.size, device=coords.device) - (self.size - 1) // 2
        rows = (base[..., :1].long() + steps).clamp(0, height - 1)  # (B | 1, N, size)
        cols = (base[..., 1:].long() + steps).clamp(0, width - 1)
        index = rearrange(rows[..., :, None] * width + cols[..., None, :], "b n i j -> b (n i j)")
        pixels = images.flatten(2).gather(2, index.expand(batch, -1).unsqueeze(1).expand(-1, channels, -1))
        pixels = rearrange(pixels, "b c (n i j) -> b n c (i j)", i=self.size, j=self.size)
        return pixels, (position - base).expand(batch, -1, -1)

    def forward(self, pixels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """:meth:`gather`'s pixels (B, N, C, size^2) and offsets (B, N, 2) -> (B, N, dim)."""
        dtype = self.proj.weight.dtype
        return self.proj(torch.cat([pixels.flatten(2).to(dtype), offsets.to(dtype)], -1))


class LocalFeatures(nn.Module):
    """LIIF's encoder, small: a residual CNN over the input image (EDSR-baseline's blocks: conv, ReLU,
    conv, plus the input), its ``width`` features at the 3 x 3 input pixels around each query unfolded
    with the query's offset, projected and added to the query. The input window hands the decoder raw
    pixels; these are learned local features of them, which a per-query MLP turns into detail far more
    readily (``tools/photos_cnn_probe.py``: such a CNN alone, 173k parameters, gains 0.9 dB over Lanczos at
    2x on the photos' test crops). Zero-initialised projection: a new model decodes as one without it.

    The CNN runs once per image (:meth:`features`, through the decoder's ``read``); each chunk of queries
    then reads its own pixels of that map (:meth:`forward`)."""

    def __init__(self, *, dim: Positive, channels: Positive, width: Positive, blocks: Positive):
        super().__init__()
        conv = lambda into, out: nn.Conv2d(into, out, 3, padding=1, padding_mode="replicate")
        self.head = conv(channels, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(conv(width, width), nn.ReLU(), conv(width, width)) for _ in range(blocks)
        )
        self.tail = conv(width, width)
        self.unfold = InputWindow(dim=dim, channels=width, size=3)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> the CNN's features (B, width, H, W)."""
        x = self.head(images.to(self.head.weight.dtype))
        h = x
        for block in self.blocks:
            h = h + block(h)
        return x + self.tail(h)

    def forward(self, features: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """:meth:`features`' map (B, width, H, W), coords (B | 1, N, 2) as (y, x) -> (B, N, dim)."""
        return self.unfold(*self.unfold.gather(features, coords))


def dct_basis(size: Positive) -> torch.Tensor:
    """The orthonormal 2D DCT-II of a ``size`` x ``size`` window, (size^2, size^2): row ``u * size + v``
    is frequency (u, v) over the window's pixels in row-major order."""
    k = torch.arange(size, dtype=torch.float64)
    scale = torch.full((size, 1), (2 / size) ** 0.5, dtype=torch.float64)
    scale[0] = (1 / size) ** 0.5
    basis = scale * torch.cos(math.pi * (k[None, :] + 0.5) * k[:, None] / size)  # (frequency, pixel)
    return torch.kron(basis, basis).float()


class WindowFilter(nn.Module):
    """A filter over the input window predicted for each query (kernel prediction, as in Meta-SR's
    weights from a pixel's offset and scale): ``size^2`` weights from the query's decoder features and its
    offset, through a small MLP, applied per channel to the window's 2D DCT coefficients and added to the
    decoder's output. A linear upscaler is the special case of weights that depend on the offset alone;
    the features let them depend on the content. The DCT is orthonormal, so it changes what the filter
    can express not at all, only how fast it learns: neighbouring pixels are nearly equal, and weights on
    the raw pixels learn the fine detail (their small differences) slowly; weights on frequencies learn
    each at its own pace (on photos at 2x, a filter of the offset alone reached in 100 steps what weights
    on the pixels reached in 800; experiments/photos). The last layer starts at zero: a new model decodes
    as one without it."""

    def __init__(self, *, dim: Positive, size: Positive):
        super().__init__()
        self.register_buffer("basis", dct_basis(size), persistent=False)
        self.norm = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim + 2, dim), nn.GELU(), nn.Linear(dim, size * size))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, features: torch.Tensor, pixels: torch.Tensor, offsets: torch.Tensor) -> torch.Tensor:
        """features (B | 1, N, D), the window's pixels (B, N, C, K) and offsets (B, N, 2) -> (B, N, C)."""
        features = self.norm(features).expand(offsets.shape[0], -1, -1)
        weights = self.mlp(torch.cat([features, offsets.to(features.dtype)], -1))
        frequencies = pixels.to(weights.dtype) @ self.basis.to(weights.dtype).T
        return torch.einsum("bnk,bnck->bnc", weights, frequencies)


ImageSkipMode = Literal["none", "bilinear", "bicubic"]


class ImageSkip(nn.Module):
    """LTE's image skip: the decoder's values plus the input image interpolated at each query, so the
    decoder learns the residual over a classical upscaler of its input (exact at the input's pixel
    centres). The decoder's output layers start at zero: a new model renders that upscaler."""

    def __init__(self, *, mode: Interpolation):
        super().__init__()
        self.mode = mode

    def forward(self, values: torch.Tensor, images: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
        """values (B, N, C) + images (B, C, H, W) at coords (B | 1, N, 2)."""
        return values + sample_image(images, coords, self.mode).to(values.dtype)

    @staticmethod
    def build(mode: ImageSkipMode, *heads: nn.Linear) -> "ImageSkip | None":
        """The skip for ``mode`` (None for ``none``), with the output layers ``heads`` zeroed."""
        if mode == "none":
            return None
        for head in heads:
            nn.init.zeros_(head.weight)
            nn.init.zeros_(head.bias)
        return ImageSkip(mode=mode)


def split_cells(coords: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(..., 2 | 4) queries -> centres (..., 2) and cell sizes (..., 2), or (..., 0) where there are none."""
    if coords.shape[-1] not in (2, 4):
        raise ValueError(
            f"coords must end in 2 (y, x) or 4 (y, x, h, w) values, got shape {tuple(coords.shape)}"
        )
    return coords[..., :2], coords[..., 2:]
