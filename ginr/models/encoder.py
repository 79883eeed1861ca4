"""Encoders: image -> patch tokens + latent tokens -> blocks -> latent tokens.

Data flow, with L patch tokens and M latents::

    images (B, C, H, W) -> PatchTokenizer -> (B, L, D) -> insert latents -> (B, L + M, D)
    -> block x depth -> gather latent positions -> norm -> [processor] -> (B, M, D)

The block is the encoder axis: :class:`BiMambaEncoder` (Mamba-GINR, the default) and
:class:`TransformerEncoder` (the attention baseline) and :class:`Mamba2Encoder` (Mamba-2 mixers) share
everything else (:class:`LatentEncoder`).
"""

import functools
from abc import ABC, abstractmethod
from typing import TypedDict, Unpack

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from ginr.constraints import Count, Positive
from ginr.models.layers import (
    AttnImpl,
    FourierFeatures,
    checkpointed,
    prenorm_attention,
    prenorm_feedforward,
)
from ginr.models.layout import Placement, insert_latents, latent_coords, latent_positions, patch_centres
from ginr.models.mamba import BiMamba, MambaOptions
from ginr.models.mamba2 import BiMamba2, Mamba2Options


class PatchTokenizer(nn.Module):
    """Patches embedded linearly plus fixed Fourier features of the patch centres, so one set of weights
    takes any resolution. Images are zero-padded by ``padding`` pixels on every side (as a strided
    convolution's padding), then at the bottom and right up to a multiple of the patch."""

    def __init__(
        self, *, channels: int, dim: int, patch_size: int, padding: int = 0, num_fourier: int = 32,
        bandwidth: float = 16.0,
    ):  # fmt: skip
        super().__init__()
        self.channels, self.patch_size, self.padding = channels, patch_size, padding
        self.proj = nn.Linear(channels * patch_size**2, dim)
        self.fourier = FourierFeatures(num_features=num_fourier, bandwidth=bandwidth)
        self.pos = nn.Linear(self.fourier.out_dim, dim)

    def centres(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(gh * gw, 2) patch centres (y, x) in the pixel-centre convention of ``ginr.coords``."""
        return patch_centres(height, width, patch_size=self.patch_size, padding=self.padding, device=device)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> tokens (B, ceil((H + 2 pad)/p) * ceil((W + 2 pad)/p), D)."""
        _, channels, height, width = images.shape
        if channels != self.channels:
            raise ValueError(f"encoder expects {self.channels}-channel images, got {channels} channels")
        p, pad = self.patch_size, self.padding
        height_padded, width_padded = height + 2 * pad, width + 2 * pad
        images = F.pad(images, (pad, pad + -width_padded % p, pad, pad + -height_padded % p))
        patches = rearrange(images, "b c (gh p1) (gw p2) -> b (gh gw) (c p1 p2)", p1=p, p2=p)
        return self.proj(patches) + self.pos(self.fourier(self.centres(height, width, images.device)))


def mlp(dim: int, mlp_dim: int) -> nn.Sequential:
    """Linear-GELU-Linear: the second half of every encoder block."""
    return nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))


class MixerBlock(nn.Module):
    """Pre-norm residual block: x + mixer(norm(x)) (a bidirectional Mamba or Mamba-2), then x + MLP(norm(x))."""

    def __init__(self, dim: int, *, mixer: nn.Module, mlp_dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.mixer = mixer
        self.mlp = mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.mixer(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransformerBlock(nn.Module):
    """Pre-norm residual block: x + Attention(norm(x)) over the whole sequence, then x + MLP(norm(x))."""

    def __init__(self, dim: int, *, mlp_dim: int, heads: int, dim_head: int, attn_impl: AttnImpl):
        super().__init__()
        self.attn = prenorm_attention(dim, heads=heads, dim_head=dim_head, impl=attn_impl)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(x)
        return x + self.mlp(self.norm2(x))


class LatentProcessor(nn.Module):
    """Self-attention + GEGLU blocks over the latent tokens (SCENT's processor)."""

    def __init__(self, dim: int, *, depth: int, heads: int, dim_head: int, ff_mult: int = 4):
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList(
                [
                    prenorm_attention(dim, heads=heads, dim_head=dim_head),
                    prenorm_feedforward(dim, mult=ff_mult),
                ]
            )
            for _ in range(depth)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for attn, ff in self.layers:
            x = x + attn(x)
            x = x + ff(x)
        return x


class Layout(TypedDict, total=False):
    """The keyword arguments every :class:`LatentEncoder` takes (its defaults are LatentEncoder's). An
    encoder takes them as ``**options: Unpack[...]``, alone or beside its mixer's options (the config
    schema checks the keys and types of both)."""

    channels: Positive
    dim: Positive
    depth: Positive
    mlp_dim: Positive
    patch_size: Positive
    patch_padding: Count
    num_latents: Positive
    placement: Placement
    processor_depth: Count
    heads: Positive
    dim_head: Positive
    checkpoint: bool


class LatentEncoder(nn.Module, ABC):
    """What every encoder shares: patch tokens and learnable latent tokens placed among them -> ``depth``
    blocks, each ``(B, S, D) -> (B, S, D)`` from the subclass's :meth:`block` -> the latents' hidden
    states, normed [-> processor] -> (B, M, D). The options that are not :class:`Layout`'s go to
    :meth:`block`."""

    def __init__(
        self, *, channels: Positive = 3, dim: Positive = 256, depth: Positive = 6, mlp_dim: Positive = 1024,
        patch_size: Positive = 2, patch_padding: Count = 0, num_latents: Positive = 256,
        placement: Placement = "interleave", processor_depth: Count = 0, heads: Positive = 8,
        dim_head: Positive = 64, checkpoint: bool = False, **block_options,
    ):  # fmt: skip
        super().__init__()
        latent_positions(1, 1, placement)  # validates the name before any weights are built
        self.dim, self.depth, self.mlp_dim, self.heads, self.dim_head = dim, depth, mlp_dim, heads, dim_head
        self.num_latents, self.placement, self.checkpoint = num_latents, placement, checkpoint
        self.tokenizer = PatchTokenizer(
            channels=channels, dim=dim, patch_size=patch_size, padding=patch_padding
        )
        self.latents = nn.Parameter(torch.randn(num_latents, dim) * 0.02)
        self.norm = nn.LayerNorm(dim)
        self.processor = (
            LatentProcessor(dim, depth=processor_depth, heads=heads, dim_head=dim_head)
            if processor_depth
            else None
        )
        self.blocks = nn.ModuleList(self.block(**block_options) for _ in range(depth))

    @abstractmethod
    def block(self, **options) -> nn.Module:
        """One of the ``depth`` blocks, ``(B, S, D) -> (B, S, D)``, from the encoder's own ``options``."""

    def latent_coords(self, height: int, width: int) -> torch.Tensor:
        """(M, 2) where each latent sits in a ``height x width`` input (:func:`latent_coords`)."""
        tokenizer = self.tokenizer
        return latent_coords(
            height, width, patch_size=tokenizer.patch_size, padding=tokenizer.padding,
            num_latents=self.num_latents, placement=self.placement,
        )  # fmt: skip

    def latent_tokens(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        """(M, D): the latents as they enter the sequence of a ``height x width`` input."""
        return self.latents

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, H, W) -> latents (B, M, D)."""
        tokens = self.tokenizer(images)
        positions = latent_positions(tokens.shape[1], self.num_latents, self.placement)
        x = insert_latents(tokens, self.latent_tokens(*images.shape[-2:], images.device), positions)
        for block in self.blocks:
            x = checkpointed(block, x) if self.checkpoint and x.requires_grad else block(x)
        latents = self.norm(x[:, torch.tensor(positions, device=x.device)])
        return self.processor(latents) if self.processor is not None else latents


class BiMambaOptions(Layout, MambaOptions, total=False):
    """The layout and the Mamba mixers' options."""


class BiMambaEncoder(LatentEncoder):
    """Mamba-GINR's encoder: bidirectional Mamba blocks over the patches and latents, in sequence order."""

    def __init__(self, **options: Unpack[BiMambaOptions]):
        super().__init__(**options)

    def block(self, **mixer: Unpack[MambaOptions]) -> nn.Module:
        return MixerBlock(self.dim, mixer=BiMamba(self.dim, **mixer), mlp_dim=self.mlp_dim)


class Mamba2EncoderOptions(Layout, Mamba2Options, total=False):
    """The layout and the Mamba-2 mixers' options."""


class Mamba2Encoder(LatentEncoder):
    """Mamba-2 (SSD) mixers in both directions on the same layout: a scalar decay per head makes each scan
    chunk a matrix product (:mod:`ginr.ops.ssd`); mamba-ssm's kernel on a GPU where it imports."""

    def __init__(self, **options: Unpack[Mamba2EncoderOptions]):
        super().__init__(**options)

    def block(self, **mixer: Unpack[Mamba2Options]) -> nn.Module:
        return MixerBlock(self.dim, mixer=BiMamba2(self.dim, **mixer), mlp_dim=self.mlp_dim)


class TransformerEncoder(LatentEncoder):
    """The transformer baseline (Trans-INR, LA-GINR): pre-norm attention blocks over the same patch tokens
    and latents (``heads`` x ``dim_head`` each; configs/encoder/transformer.yaml sizes it to BiMamba's
    parameters). Attention has no sequence order, so interleaved latents also get the tokenizer's
    position embedding of their place in the image (:func:`latent_coords`), as the patches do: each
    latent stays tied to its region, as in BiMamba's sequence, and the decoder's locality bias holds."""

    def __init__(self, *, attn_impl: AttnImpl = "sdpa", **layout: Unpack[Layout]):
        super().__init__(attn_impl=attn_impl, **layout)

    def block(self, *, attn_impl: AttnImpl) -> nn.Module:
        shape = {"mlp_dim": self.mlp_dim, "heads": self.heads, "dim_head": self.dim_head}
        return TransformerBlock(self.dim, attn_impl=attn_impl, **shape)

    def latent_tokens(self, height: int, width: int, device: torch.device) -> torch.Tensor:
        if self.placement != "interleave":  # appended or prepended latents have no place in the image
            return self.latents
        tokenizer = self.tokenizer
        places = _latent_places(
            height, width, tokenizer.patch_size, tokenizer.padding, self.num_latents, self.placement
        )
        return self.latents + tokenizer.pos(tokenizer.fourier(places.to(device)))


@functools.lru_cache(maxsize=32)
def _latent_places(
    height: int, width: int, patch_size: int, padding: int, num_latents: int, placement: str
) -> torch.Tensor:
    """:func:`latent_coords` once per geometry (Python work; the result is only read)."""
    return latent_coords(
        height, width, patch_size=patch_size, padding=padding, num_latents=num_latents, placement=placement
    )
