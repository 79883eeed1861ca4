"""Small building blocks shared by encoder and decoders (perceiver-pytorch style)."""

import math
from typing import Literal, get_args

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torch.utils.checkpoint import checkpoint

from ginr.ops.geglu import geglu

AttnImpl = Literal["sdpa", "naive"]
ATTN_IMPLS = get_args(AttnImpl)


def checkpointed(fn, *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)`` under activation checkpointing (non-reentrant). Under torch.compile the call also
    ends its graph: one compiled backward over several checkpointed calls recomputes them together and
    holds all their activations at once (pytorch/pytorch#193193), which undoes the saving."""
    out = checkpoint(fn, *args, use_reentrant=False)
    torch._dynamo.graph_break()
    return out


def checkpointed_if(enabled: bool, fn, *args: torch.Tensor) -> torch.Tensor:
    """``fn(*args)``, under :func:`checkpointed` when ``enabled`` and autograd is recording: evaluation and
    rendering keep no activations, so there checkpointing would only cost its graph break."""
    return checkpointed(fn, *args) if enabled and torch.is_grad_enabled() else fn(*args)


class PreNorm(nn.Module):
    """``fn(norm(x), context=norm(context))``; the residual stays in the caller's forward."""

    def __init__(self, dim: int, fn: nn.Module, *, context_dim: int | None = None):
        super().__init__()
        self.fn = fn
        self.norm = nn.LayerNorm(dim)
        self.norm_context = nn.LayerNorm(context_dim) if context_dim is not None else None

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        if self.norm_context is not None:
            kwargs["context"] = self.norm_context(kwargs["context"])
        return self.fn(self.norm(x), **kwargs)


class GEGLU(nn.Module):
    """``value * gelu(gate)`` of ``[value, gate] = x + bias`` (:func:`ginr.ops.geglu.geglu`)."""

    def forward(self, x: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        return geglu(x, bias)


class FeedForward(nn.Module):
    """Linear -> GEGLU -> Linear. The first Linear's bias is added inside the GEGLU, where one GPU kernel
    also gives its gradient."""

    def __init__(self, dim: int, *, mult: int = 4):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, dim * mult * 2), GEGLU(), nn.Linear(dim * mult, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        proj, gate, out = self.net
        return out(gate(F.linear(x, proj.weight), proj.bias))


class Attention(nn.Module):
    """Multi-head attention; self-attention when no ``context`` is given, cross-attention otherwise.

    ``impl="sdpa"`` uses ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels);
    ``impl="naive"`` materialises the (N, M) attention matrix and exists for memory benchmarks.
    """

    def __init__(
        self,
        query_dim: int,
        *,
        context_dim: int | None = None,
        heads: int = 8,
        dim_head: int = 64,
        impl: str = "sdpa",
    ):
        super().__init__()
        if impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {', '.join(ATTN_IMPLS)}, got {impl!r}")
        inner = heads * dim_head
        self.heads, self.impl = heads, impl
        self.to_q = nn.Linear(query_dim, inner, bias=False)
        self.to_kv = nn.Linear(context_dim or query_dim, inner * 2, bias=False)
        self.to_out = nn.Linear(inner, query_dim)

    def forward(
        self, x: torch.Tensor, context: torch.Tensor | None = None, bias: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x (B, N, Dq), context (B, M, Dc), bias (B | 1, 1, N, M) added to the logits -> (B, N, Dq).

        ``x`` may have batch 1 against a batch of contexts (queries shared by every image): its
        projection is computed once and broadcast.
        """
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b n (h d) -> b h n d", h=self.heads)
        k, v = rearrange(self.to_kv(context), "b m (two h d) -> two b h m d", two=2, h=self.heads)
        q = q.expand(k.shape[0], -1, -1, -1)
        if bias is not None:
            bias = bias.to(q.dtype)
        if self.impl == "sdpa":
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
        else:
            logits = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            if bias is not None:
                logits = logits + bias
            out = logits.softmax(dim=-1) @ v
        return self.to_out(rearrange(out, "b h n d -> b n (h d)"))


def prenorm_attention(
    dim: int, *, context_dim: int | None = None, heads: int, dim_head: int, impl: str = "sdpa"
) -> PreNorm:
    """Attention behind its LayerNorm(s): self-attention, or cross-attention to a ``context_dim`` context.
    Every attention sub-layer of the encoder and decoders is one of these, so they all normalise alike."""
    attn = Attention(dim, context_dim=context_dim, heads=heads, dim_head=dim_head, impl=impl)
    return PreNorm(dim, attn, context_dim=context_dim)


def prenorm_feedforward(dim: int, *, mult: int = 4) -> PreNorm:
    """A GEGLU feedforward behind its LayerNorm: the other half of every attention block."""
    return PreNorm(dim, FeedForward(dim, mult=mult))


Spectrum = Literal["gaussian", "log"]
SPECTRA = get_args(Spectrum)


class FourierFeatures(nn.Module):
    """Fourier features ``[sin(x W), cos(x W)]`` of coordinates in the ``ginr.coords`` convention.

    Frequencies are angular, in radians per unit of the [-1, 1] coordinate: an ``R``-pixel grid resolves
    up to ``ginr.coords.nyquist(R) = pi R / 2``. ``spectrum="gaussian"`` draws ``W ~ N(0, bandwidth^2)``
    (random directions; ``bandwidth`` is the standard deviation). ``spectrum="log"`` is deterministic and
    axis-aligned: ``num_features / in_dim`` frequencies per axis, log-spaced from ``pi / 2`` (half a cycle
    across the image) up to ``bandwidth``. Computed in float32 even under autocast: high frequencies need
    the precision.
    """

    lowest = math.pi / 2

    def __init__(
        self, *, in_dim: int = 2, num_features: int = 64, bandwidth: float = 16.0, spectrum: Spectrum = "gaussian",
        learnable: bool = False,
    ):  # fmt: skip
        super().__init__()
        if bandwidth <= 0:
            raise ValueError(f"Fourier bandwidth must be > 0, got {bandwidth}")
        if spectrum not in SPECTRA:
            raise ValueError(f"Fourier spectrum must be one of {', '.join(SPECTRA)}, got {spectrum!r}")
        self.out_dim = 2 * num_features
        if spectrum == "gaussian":
            freqs = torch.randn(in_dim, num_features)
        else:
            freqs = self.log_spectrum(in_dim, num_features, bandwidth)
        self.register_buffer("freqs", freqs)
        log_bw = torch.tensor(math.log(bandwidth))
        if learnable:
            self.log_bandwidth = nn.Parameter(log_bw)
        else:
            self.register_buffer("log_bandwidth", log_bw)

    @classmethod
    def log_spectrum(cls, in_dim: int, num_features: int, bandwidth: float) -> torch.Tensor:
        """(in_dim, num_features) axis-aligned frequencies, log-spaced per axis, divided by ``bandwidth``."""
        if num_features % in_dim:
            raise ValueError(f"log spectrum needs num_fourier divisible by {in_dim} axes, got {num_features}")
        if bandwidth <= cls.lowest:
            raise ValueError(f"log spectrum needs a bandwidth above pi / 2 rad per unit, got {bandwidth:.4g}")
        top_down = torch.logspace(0.0, math.log10(cls.lowest / bandwidth), num_features // in_dim).double()
        return torch.block_diag(*[top_down.flip(0)[None]] * in_dim).float()

    def forward(self, coords: torch.Tensor) -> torch.Tensor:
        """coords (..., in_dim) -> (..., 2 * num_features), float32."""
        with torch.autocast(coords.device.type, enabled=False):
            proj = coords.to(self.freqs.dtype) @ (self.freqs * self.log_bandwidth.exp())
            return torch.cat([proj.sin(), proj.cos()], dim=-1)
