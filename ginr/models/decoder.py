"""SCENT-style decoders: coordinates (B, N, 2) + latent tokens (B, M, Dz) -> values (B, N, C).

Coordinates of batch 1 are shared by every image: the work that depends only on them (Fourier features,
the query projection, the band stacks unless their blocks attend to the latents) runs once at batch 1
and broadcasts where it meets the latents, so it costs one image's compute instead of B.

:class:`MultiBandDecoder` (the family the experiments compare), after LA-GINR's multi-band decoder::

    q = proj(fourier_q(coords)) [+ cell(pixel size)];  m = q + CrossAttn(q, latents)   modulation vector
    h = 0
    for each scale s, coarse to fine:
        g = fourier_s(coords)
        f = band_stack_s(g) + mod_stack_s(m) + skip_s(g)                    additive modulation
        h = GELU(carry_s(f + h))                                            chain: learned layer + nonlinearity
        out = out + head_s(h)
    out = out [+ sum_k filter_k(m, offset) * dct(window)_k]                   window filter (kernel prediction)
    out = out [+ the input image interpolated at the coordinates]             image skip (LTE)

``locality > 0`` biases the modulation attention towards the latents near each query: each latent at its
place in a training input (``ginr.models.layout.latent_coords``, from the encoder's ``patch_size``,
``patch_padding`` and ``placement``, which the config passes on).

``modulation="multiplicative"`` takes ``band_stack_s(g) * mod_stack_s(m)`` instead of the sum (the earlier
form of this codebase). The band stacks see only coordinates; the carried value makes the finer scales
depend on the coarser ones, so the output is not a sum of per-scale terms.

Bandwidths are fractions of the Nyquist frequency of the training ``resolution`` (``ginr.coords.nyquist``),
so one config means the same spectrum at 32 px and at 178 px; 1.0 puts a scale's frequencies (their
standard deviation for the Gaussian spectrum, their maximum for the log spectrum) at the finest detail the
training images hold. Each stack is Linear + GELU, then ``num_layers - 1`` blocks of one type
(``ginr.models.blocks``).
:class:`ScentDecoder` is the plain SCENT decoder: cross-attention, query skip, feedforwards, linear.
"""

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple, TypedDict, Unpack

import torch
from torch import nn

from ginr.constraints import Count, NonNegative, Positive, PositiveFloat
from ginr.coords import nyquist
from ginr.models.blocks import mixes_queries
from ginr.models.conditioning import (
    CellSize,
    ImageSkip,
    ImageSkipMode,
    InputWindow,
    LocalFeatures,
    LocalityBias,
    WindowFilter,
    split_cells,
)
from ginr.models.layers import (
    AttnImpl,
    FourierFeatures,
    Spectrum,
    checkpointed_if,
    prenorm_attention,
    prenorm_feedforward,
)
from ginr.models.layout import Placement, latent_coords

BlockFactory = Callable[..., nn.Module]


class Stack(nn.Module):
    """Linear + GELU, then ``num_layers - 1`` blocks, optionally under activation checkpointing."""

    def __init__(self, *, in_dim: int, dim: int, num_layers: int, block: BlockFactory, checkpoint: bool):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"decoder num_layers must be >= 1, got {num_layers}")
        self.inp = nn.Sequential(nn.Linear(in_dim, dim), nn.GELU())
        self.blocks = nn.ModuleList(block(dim=dim) for _ in range(num_layers - 1))
        self.checkpoint = checkpoint

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        x = self.inp(x)
        for blk in self.blocks:
            x = checkpointed_if(self.checkpoint, blk, x, context)
        return x


Modulation = Literal["additive", "multiplicative"]


class Band(nn.Module):
    """One scale of the multi-band decoder: its modulated feature, and the carried value through it."""

    def __init__(
        self, *, fourier: FourierFeatures, dim: int, out_channels: int, modulation: Modulation, **stack
    ):
        super().__init__()
        self.fourier = fourier
        self.band = Stack(in_dim=self.fourier.out_dim, dim=dim, **stack)
        self.modulation = Stack(in_dim=dim, dim=dim, **stack)
        self.skip = nn.Linear(self.fourier.out_dim, dim)
        self.carry = nn.Sequential(nn.Linear(dim, dim), nn.GELU())
        self.head = nn.Linear(dim, out_channels)
        self.multiplicative = modulation == "multiplicative"

    def feature(self, coords: torch.Tensor, modulation: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """(B, N, D): this scale's band features of the coordinates, modulated."""
        g = self.fourier(coords)
        band, mod = self.band(g, latents), self.modulation(modulation, latents)
        return (band * mod if self.multiplicative else band + mod) + self.skip(g)

    def forward(self, feature: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(carried value, this scale's output) from the feature and the value carried from coarser scales."""
        hidden = self.carry(feature + hidden)
        return hidden, self.head(hidden)


class DecoderInputs(NamedTuple):
    """What a decoder reads of the encoder's input, made once per image (:meth:`QueryDecoder.read`) and
    shared by every chunk of queries decoded from it."""

    images: torch.Tensor  # (B, C, H, W): the image skip's and the input window's pixels
    local: torch.Tensor | None  # (B, width, H, W): the local features' CNN map, or None without them


class QueryOptions(TypedDict, total=False):
    """What both decoders take for their queries and their attention to the latents (the defaults are
    :class:`QueryDecoder`'s)."""

    out_channels: Positive
    hidden_dim: Positive
    resolution: Positive
    query_bandwidth: PositiveFloat
    spectrum: Spectrum
    num_fourier: Positive
    learnable_bandwidth: bool
    heads: Positive
    dim_head: Positive
    attn_impl: AttnImpl
    cell_conditioning: bool
    input_window: Count
    window_filter: bool
    local_features: Count
    local_blocks: Count


class QueryDecoder(nn.Module):
    """What both decoders start from: coordinates -> queries (Fourier features of the pixel centres, a
    projection [+ the pixel's size]), and the means to attend from them to the latents. A base class, not
    a child module, so that these weights keep their names at the top of the decoder (``query_proj``,
    ``cell``) and checkpoints load across versions.

    Bandwidths are fractions of ``resolution``'s Nyquist frequency: :meth:`fourier` gives the features of
    one."""

    def __init__(
        self, *, latent_dim: Positive, out_channels: Positive = 3, hidden_dim: Positive = 512,
        resolution: Positive = 32, query_bandwidth: PositiveFloat = 0.125, spectrum: Spectrum = "log",
        num_fourier: Positive = 64, learnable_bandwidth: bool = False, heads: Positive = 8,
        dim_head: Positive = 64, attn_impl: AttnImpl = "sdpa", cell_conditioning: bool = False,
        input_window: Count = 0, window_filter: bool = False, local_features: Count = 0, local_blocks: Count = 4,
    ):  # fmt: skip
        super().__init__()
        if window_filter and not input_window:
            raise ValueError(
                "decoder.window_filter=true weighs the input pixels around each query: it needs "
                f"decoder.input_window > 0, got {input_window}"
            )
        self.fourier_options = {
            "num_features": num_fourier,
            "spectrum": spectrum,
            "learnable": learnable_bandwidth,
        }
        self.resolution, self.dim, self.out_channels = resolution, hidden_dim, out_channels
        self.attention_options = {
            "context_dim": latent_dim,
            "heads": heads,
            "dim_head": dim_head,
            "impl": attn_impl,
        }
        self.query_fourier = self.fourier(query_bandwidth)
        self.query_proj = nn.Linear(self.query_fourier.out_dim, hidden_dim)
        self.cell = CellSize(dim=hidden_dim, resolution=resolution) if cell_conditioning else None
        self.window = (
            InputWindow(dim=hidden_dim, channels=out_channels, size=input_window) if input_window else None
        )
        self.filter = WindowFilter(dim=hidden_dim, size=input_window) if window_filter else None
        self.local = (
            LocalFeatures(dim=hidden_dim, channels=out_channels, width=local_features, blocks=local_blocks)
            if local_features
            else None
        )

    def fourier(self, fraction: float) -> FourierFeatures:
        """Fourier features of bandwidth ``fraction`` of the training resolution's Nyquist frequency."""
        return FourierFeatures(bandwidth=fraction * nyquist(self.resolution), **self.fourier_options)

    def latent_attention(self) -> nn.Module:
        """A pre-norm cross-attention from the queries to the latents."""
        return prenorm_attention(self.dim, **self.attention_options)

    @property
    def reads_images(self) -> bool:
        """Whether decoding needs the encoder's input (``images=``): for the image skip, the input window or
        the local features."""
        return bool(self.image_readers)

    @property
    def image_readers(self) -> list[str]:
        """The options through which this decoder reads its input image."""
        skip = getattr(self, "image_skip", None)  # set by the subclasses, after this class's __init__
        readers = [f"decoder.image_skip: {skip.mode} at each query"] if skip is not None else []
        readers += ["decoder.input_window"] if self.window is not None else []
        return readers + (["decoder.local_features"] if self.local is not None else [])

    def missing_images(self) -> ValueError:
        return ValueError(
            f"this decoder reads its input image ({'; '.join(self.image_readers)}): pass images= (the "
            "encoder's input) to decode / render"
        )

    def read(self, images: torch.Tensor | None) -> DecoderInputs | None:
        """The encoder's input (B, C, H, W) -> what this decoder reads of it (None where it reads nothing),
        made once per image: the local features' CNN runs here, not once per chunk of queries."""
        if not self.reads_images:
            return None
        if images is None:
            raise self.missing_images()
        return DecoderInputs(images, None if self.local is None else self.local.features(images))

    def queries(
        self, coords: torch.Tensor, inputs: DecoderInputs | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, tuple[torch.Tensor, torch.Tensor] | None]:
        """coords (B | 1, N, 2 | 4) [, :meth:`read`'s inputs] -> (the pixel centres (B | 1, N, 2), the
        queries (B | 1, N, D); (B, N, D) with the input window or the local features, and the window: its
        pixels (B, N, C, K) and offsets (B, N, 2), or None without one)."""
        if inputs is None and self.reads_images:
            raise self.missing_images()
        coords, cells = split_cells(coords)
        q = self.query_proj(self.query_fourier(coords))
        if self.cell is not None:
            q = q + self.cell(cells)
        window = None
        if self.window is not None:
            window = self.window.gather(inputs.images, coords)
            q = q + self.window(*window)
        if self.local is not None:
            q = q + self.local(inputs.local, coords)
        return coords, q, window

    def finish(
        self, out: torch.Tensor, features: torch.Tensor, window: tuple | None, inputs: DecoderInputs | None,
        coords: torch.Tensor,
    ) -> torch.Tensor:  # fmt: skip
        """The decoder's values (B, N, C) [+ the window filter of ``features``] [+ the image skip]."""
        if self.filter is not None:
            out = out + self.filter(features, *window)
        return out if self.image_skip is None else self.image_skip(out, inputs.images, coords)


class MultiBandDecoder(QueryDecoder):
    def __init__(
        self, *, block: BlockFactory, latent_dim: Positive, num_layers: Positive = 3,
        bandwidths: Sequence[PositiveFloat] = (0.25, 1.0), locality: NonNegative = 0.0,
        num_latents: Positive = 256, patch_size: Positive | None = None, patch_padding: Count = 0,
        placement: Placement | None = None, modulation: Modulation = "additive",
        image_skip: ImageSkipMode = "none", checkpoint: bool = False, **queries: Unpack[QueryOptions],
    ):  # fmt: skip
        if not bandwidths:
            raise ValueError("decoder bandwidths must name at least one scale, got an empty list")
        super().__init__(latent_dim=latent_dim, **queries)
        self.modulation = self.latent_attention()
        self.locality = None
        if locality > 0:  # the latents' places in a training input (resolution x resolution)
            if patch_size is None or placement is None:
                raise ValueError(
                    f"decoder.locality={locality} needs the encoder's patch layout (patch_size, placement), "
                    "which this encoder does not give; set decoder.locality=0"
                )
            layout = {"patch_size": patch_size, "padding": patch_padding, "placement": placement}
            side = self.resolution
            positions = latent_coords(side, side, num_latents=num_latents, **layout)
            self.locality = LocalityBias(positions=positions, strength=locality)
        stack = {"num_layers": num_layers, "block": block, "checkpoint": checkpoint}
        self.bands = nn.ModuleList(
            Band(
                fourier=self.fourier(bw),
                dim=self.dim,
                out_channels=self.out_channels,
                modulation=modulation,
                **stack,
            )
            for bw in bandwidths
        )
        self.mixes_queries = mixes_queries(self.bands)
        self.image_skip = ImageSkip.build(image_skip, *(band.head for band in self.bands))

    def forward(
        self, latents: torch.Tensor, coords: torch.Tensor, inputs: DecoderInputs | None = None
    ) -> torch.Tensor:
        """latents (B, M, Dz), coords (B | 1, N, 2 | 4) [, :meth:`read`'s inputs] -> (B, N, C)."""
        coords, q, window = self.queries(coords, inputs)
        bias = self.locality(coords) if self.locality is not None else None
        modulation = q + self.modulation(q, context=latents, bias=bias)
        out = self.chain([band.feature(coords, modulation, latents) for band in self.bands])
        return self.finish(out, modulation, window, inputs, coords)

    def chain(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """The per-scale features (coarse to fine) -> values (B, N, C) through the carried value."""
        hidden, out = torch.zeros_like(features[0]), 0
        for band, feature in zip(self.bands, features, strict=True):
            hidden, value = band(feature, hidden)
            out = out + value
        return out


class ScentDecoder(QueryDecoder):
    """Fourier queries -> cross-attention to the latents -> + query skip -> GEGLU feedforwards -> linear."""

    mixes_queries = False

    def __init__(
        self, *, latent_dim: Positive, num_layers: Positive = 2, ff_mult: Positive = 4,
        image_skip: ImageSkipMode = "none", checkpoint: bool = False, **queries: Unpack[QueryOptions],
    ):  # fmt: skip
        super().__init__(latent_dim=latent_dim, **queries)
        self.cross_attn = self.latent_attention()
        self.ffs = nn.ModuleList(prenorm_feedforward(self.dim, mult=ff_mult) for _ in range(num_layers))
        self.out = nn.Sequential(nn.LayerNorm(self.dim), nn.Linear(self.dim, self.out_channels))
        self.image_skip = ImageSkip.build(image_skip, self.out[-1])
        self.checkpoint = checkpoint

    def forward(
        self, latents: torch.Tensor, coords: torch.Tensor, inputs: DecoderInputs | None = None
    ) -> torch.Tensor:
        """latents (B, M, Dz), coords (B | 1, N, 2 | 4) [, :meth:`read`'s inputs] -> (B, N, C)."""
        coords, q, window = self.queries(coords, inputs)
        x = q + self.cross_attn(q, context=latents)
        for ff in self.ffs:
            x = x + checkpointed_if(self.checkpoint, ff, x)
        return self.finish(self.out(x), x, window, inputs, coords)
